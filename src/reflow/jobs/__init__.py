"""Scheduling and executing sync runs."""
