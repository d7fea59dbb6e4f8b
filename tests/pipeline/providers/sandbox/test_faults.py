"""Fault injection: reproducible dice, and the ASGI wrapper that cuts answers half-way."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from pipeline.providers.sandbox import faults
from pipeline.providers.sandbox.faults import CUT_HEADER, CutConnections, FaultDice


def test_dice_with_the_same_seed_give_the_same_faults() -> None:
    def throws(seed: int) -> list[Any]:
        dice = FaultDice(seed)
        return [dice.roll(0.5) for _ in range(20)] + [dice.choice((500, 502, 503)), dice.uniform(1.0, 2.0)]

    assert throws(3) == throws(3)
    assert throws(3) != throws(4)


def test_rate_zero_never_fires_and_rate_one_always_does() -> None:
    dice = FaultDice(0)

    assert not any(dice.roll(0.0) for _ in range(50))
    assert all(dice.roll(1.0) for _ in range(50))
    assert all(1.0 <= dice.uniform(1.0, 2.0) <= 2.0 for _ in range(50))


def _app(cut_after: int | None, chunks: list[bytes]) -> Any:
    """An ASGI app answering ``chunks`` with a full Content-Length, optionally asking for a cut."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", str(sum(map(len, chunks))).encode())]
        if cut_after is not None:
            headers.append((CUT_HEADER, str(cut_after).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


def _exchange(app: Any, scope_type: str = "http") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(CutConnections(app)({"type": scope_type}, receive, send))
    return sent


def test_a_cut_answer_stops_after_n_body_bytes_without_completing() -> None:
    sent = _exchange(_app(5, [b"abc", b"defgh", b"ijk"]))

    start, *bodies = sent
    assert (CUT_HEADER, b"5") not in start["headers"]  # the instruction never reaches the client
    assert (b"content-length", b"11") in start["headers"]  # still promises the whole body
    assert b"".join(m["body"] for m in bodies) == b"abcde"
    assert all(m["more_body"] for m in bodies)  # never says the body is complete


def test_a_cut_after_zero_bytes_sends_only_the_headers() -> None:
    sent = _exchange(_app(0, [b"abc"]))

    assert [m["type"] for m in sent] == ["http.response.start"]


def test_an_answer_without_the_header_passes_unchanged() -> None:
    sent = _exchange(_app(None, [b"abc", b"def"]))

    assert [m.get("body") for m in sent[1:]] == [b"abc", b"def"]
    assert sent[-1]["more_body"] is False


def test_the_log_filter_hides_only_the_complaint_about_a_deliberate_cut() -> None:
    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, None, None)

    hide = faults._HideDeliberateCuts()
    complaint = record("ASGI callable returned without completing response.")

    async def cut_then_log() -> tuple[bool, bool]:
        await CutConnections(_app(1, [b"abc"]))({"type": "http"}, _receive, _discard)
        return hide.filter(complaint), hide.filter(record("something else failed"))

    assert contextvars.Context().run(asyncio.run, cut_then_log()) == (False, True)
    # An exchange that was not cut on purpose keeps its error line.
    assert contextvars.Context().run(hide.filter, complaint) is True


def test_installing_the_log_filter_twice_adds_it_once() -> None:
    faults.install_log_filter()
    faults.install_log_filter()

    logger = logging.getLogger("uvicorn.error")
    assert sum(isinstance(f, faults._HideDeliberateCuts) for f in logger.filters) == 1


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None
