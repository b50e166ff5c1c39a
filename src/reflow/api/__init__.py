"""The Census-compatible HTTP API."""
