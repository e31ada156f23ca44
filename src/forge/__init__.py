"""FrostGate Forge: governed, sandboxed cyber-training with signed verdicts."""

__version__ = "0.1.0"
