"""One sync run: read -> diff -> map -> write -> record. No HTTP, no FastAPI."""
