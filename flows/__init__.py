"""Prefect wiring over `pipeline`: flows read like the steps of a render, nothing more."""
