"""Reading files that come from outside the platform (CLI arguments, verifier inputs)."""

from forge.files.bounded import InputRefused, read_bounded, read_bounded_text

__all__ = ["InputRefused", "read_bounded", "read_bounded_text"]
