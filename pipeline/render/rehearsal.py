"""Before any money: stitch tiny synthetic clips with the script's exact master settings.

A run refuses to start (exit 65, naming the field) when its masters could not be made from the
clips it is about to buy.
"""

from __future__ import annotations

from pipeline.planning.plan import RenderPlan
from pipeline.script.model import Script


def rehearse_masters(script: Script, plan: RenderPlan) -> None:
    """Raise ScriptError (65) when a master of ``plan`` cannot be stitched with ``script``'s settings."""
    # TODO(issue 12): synthetic clips, the real stitcher, one master per distinct setting.
    return None
