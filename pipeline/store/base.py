"""The job store as the engine sees it: the calls it makes, whatever keeps the rows.

:class:`~pipeline.store.jobs.SqlJobStore` (SQLite or any SQL URL) is the implementation; a test
or a new backend implements this protocol. Every state change goes through the transition table
(:mod:`pipeline.store.transitions`); money crosses this interface as ``Decimal`` USD.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from pipeline.store.schema import Job, JobStatus, Spend


class JobStore(Protocol):
    """Jobs and the spend ledger of runs: the methods the render engine and the run use."""

    def spend(self, run_id: str) -> Spend:
        """The run's limit, reserved and charged amounts."""
        ...

    def set_run_status(self, run_id: str, status: str) -> None:
        """Record how the run stands (running, delivered, incomplete, interrupted)."""
        ...

    def upsert_job(
        self, *, run_id: str, narrative: str, variant: str, pass_: str, segment: int, body: Mapping[str, Any]
    ) -> Job:
        """The job with this identity: created as ``planned`` if new, else the stored one."""
        ...

    def get(self, key: str) -> Job:
        """The job ``key``."""
        ...

    def begin_submit(self, key: str, amount: Decimal, *, replace_unknown: bool = False) -> Job | None:
        """Event ``reserve`` (or ``resubmit``): None when the budget refuses; JobBusy when the
        table does."""
        ...

    def mark_not_sent(self, key: str, error: str) -> None:
        """Event ``not_sent``: the request was certainly not created."""
        ...

    def mark_submitted(self, key: str, request_id: str) -> None:
        """Event ``accepted``: the provider created ``request_id``."""
        ...

    def mark_charged(self, key: str, request_id: str, cost: Decimal) -> bool:
        """Event ``completed_result``: True when this call charged it (once per request)."""
        ...

    def mark_completed(self, key: str, *, file: str, sha256: str, size: int, cost: Decimal) -> None:
        """Event ``downloaded``: the clip is on disk and verified."""
        ...

    def mark_ended(self, key: str, status: JobStatus, *, error: str | None = None) -> None:
        """Events ``failed``, ``cancelled`` or ``rejected``: nothing billed, reservation released."""
        ...

    def mark_unknown(self, key: str, error: str) -> None:
        """Event ``answer_lost``: the request may exist; its reservation is kept."""
        ...
