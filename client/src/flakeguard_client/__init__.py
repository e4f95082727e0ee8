"""FlakeGuard's CI client: uploads JUnit reports, forgives quarantined failures."""

__version__ = "0.1.0"
