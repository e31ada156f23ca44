"""Private: the verification pipeline and its command line. Import from `forge_verify`."""
