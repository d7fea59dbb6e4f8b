"""``python -m pipeline.cli`` runs the klingflow command line."""

from pipeline.cli import run

run()
