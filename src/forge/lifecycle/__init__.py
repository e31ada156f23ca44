"""Scenario lifecycle: the persisted state machine every lab moves through."""
