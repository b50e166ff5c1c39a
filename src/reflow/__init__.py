"""Reflow: self-hosted reverse ETL with a Census-compatible Management API."""

__version__ = "0.1.0"
