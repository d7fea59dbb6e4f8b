"""A render run: drafts, selection, finals, masters, archive — the orchestration core.

Plain asyncio, no Prefect: ``flows/`` wraps each generation job in a Prefect task and supplies
Prefect's global concurrency limits; tests drive the same engine directly.
"""
