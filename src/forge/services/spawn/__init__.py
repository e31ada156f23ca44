"""spawn_service: the public entry (spawn API, entitlements, billing, access, web UI)."""
