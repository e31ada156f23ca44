"""Forge services: thin FastAPI layers over the concept packages."""
