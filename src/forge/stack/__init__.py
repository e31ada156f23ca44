"""The whole platform on one machine: `forge up` (supervisor) and `forge demo` (a journey)."""
