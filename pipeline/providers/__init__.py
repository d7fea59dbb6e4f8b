"""Generation providers: the interface, the RunComfy adapter, and the local sandbox.

Pick one with :func:`pipeline.providers.selection.open_provider`; run a job end to end with
:func:`pipeline.providers.jobs.run_job`.
"""
