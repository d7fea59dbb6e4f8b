"""A local stand-in for the RunComfy Model API that renders real clips with ffmpeg.

Same paths, status values, answers and error bodies as the hosted API, plus sandbox-only paths
under ``/v1/sandbox/...`` (billing ledger, image uploads) and a CDN-like ``/cdn/...``. Start it
with ``klingflow sandbox serve`` or in-process with :func:`~pipeline.providers.sandbox.server.run_sandbox`.
"""
