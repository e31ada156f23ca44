"""Who is calling: API keys, learner sessions, receipts, and (dev only) plain headers."""
