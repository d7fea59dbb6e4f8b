"""Fault injection: seeded dice, and an ASGI wrapper that drops connections half-way.

A handler asks for a drop by adding the header ``x-sandbox-cut-after: N`` to its answer; the
wrapper then sends the status line, the headers (Content-Length still promising the full body)
and only the first N body bytes, and ends the exchange without completing it, so the client
sees exactly what a dropped connection looks like. uvicorn logs such an exchange as an error;
that one log line is filtered out (only for exchanges cut on purpose).
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CUT_HEADER: Final = b"x-sandbox-cut-after"
_cutting: contextvars.ContextVar[bool] = contextvars.ContextVar("sandbox_cutting", default=False)


class FaultDice:
    """Seeded coin flips, safe to share between threads."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault injection, not security
        self._lock = threading.Lock()

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choice(self, options: tuple[int, ...]) -> int:
        """One of ``options``."""
        with self._lock:
            return self._rng.choice(options)

    def uniform(self, low: float, high: float) -> float:
        """A float in [low, high]."""
        with self._lock:
            return self._rng.uniform(low, high)


class CutConnections:
    """ASGI wrapper honouring ``x-sandbox-cut-after`` (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget: int | None = None
        finished = False

        async def guarded_send(message: Message) -> None:
            nonlocal budget, finished
            if finished:
                return  # swallow the rest of a cut answer
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == CUT_HEADER:
                        budget = int(value)
                    else:
                        headers.append((name, value))
                message = {**message, "headers": headers}
                await send(message)
                if budget == 0:
                    finished = True
                return
            if message["type"] == "http.response.body" and budget is not None:
                body: bytes = message.get("body", b"")
                if len(body) >= budget:
                    await send({"type": "http.response.body", "body": body[:budget], "more_body": True})
                    finished = True
                    return
                budget -= len(body)
                await send({**message, "more_body": True})
                return
            await send(message)

        await self.app(scope, receive, guarded_send)
        if finished:
            # Set here, in the server's own task (sends may come from child tasks whose context
            # changes would not reach it), so the log filter can recognise this exchange.
            _cutting.set(True)


class _HideDeliberateCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cutting.get() and "without completing response" in record.getMessage())


_installed = False


def install_log_filter() -> None:
    """Hide uvicorn's complaint about exchanges this module cut on purpose (idempotent)."""
    global _installed
    if not _installed:
        logging.getLogger("uvicorn.error").addFilter(_HideDeliberateCuts())
        _installed = True
