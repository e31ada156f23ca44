"""Chaos: kill -9 at every named crash point and while labs are in flight; nothing lost."""
