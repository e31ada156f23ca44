"""Per-tenant and per-subject rate limits and concurrency slots, atomic across replicas."""
