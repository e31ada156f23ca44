"""The published OpenAPI documents, checked against the running services."""
