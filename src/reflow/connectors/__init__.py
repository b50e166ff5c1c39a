"""Connectors: the base contract, typed errors, the registry and the built-in sources and
destinations. They import nothing of the service (no db, config, api, services, jobs,
engine); ``pyproject.toml``'s import-linter contracts check that."""
