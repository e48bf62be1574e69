"""Data: staging of data sources, preflight checks, sample data."""
