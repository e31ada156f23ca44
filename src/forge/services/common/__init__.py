"""What every Forge service shares: app factory, errors, logging, readiness, metrics, auth."""
