"""klingflow: a batch production pipeline for Kling 3.0 video generation.

`pipeline` is the library: the render script model and planner (pure), providers, media,
archive and settings (adapters at the edge). `flows` wires it into Prefect.
"""

__version__ = "0.1.0"
