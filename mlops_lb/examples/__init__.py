"""Bundled example specs (``FleetSpec.example("demo")``)."""
