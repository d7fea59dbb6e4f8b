"""The knobs every HTTP adapter shares: retries within them, the download policy from them."""

from __future__ import annotations

import pytest

from pipeline.errors import BadRequest, TransportError
from pipeline.providers.http_knobs import HttpKnobs, download_policy, retrying
from pipeline.providers.retry import free_call_hook
from tests.pipeline.providers.conftest import run


def test_retrying_stops_at_the_attempts_and_on_final_errors() -> None:
    knobs = HttpKnobs(max_attempts=3)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise TransportError("down")

    with pytest.raises(TransportError):
        run(retrying(knobs, free_call_hook, flaky))
    assert calls == 3

    async def refused() -> str:
        nonlocal calls
        calls += 1
        raise BadRequest("no")

    calls = 0
    with pytest.raises(BadRequest):
        run(retrying(knobs, free_call_hook, refused))
    assert calls == 1


def test_download_policy_and_timeout() -> None:
    knobs = HttpKnobs(max_download_bytes=1000, download_read_timeout_s=7, connect_timeout_s=2)
    policy = download_policy(knobs, ("fal.media",), ("http://127.0.0.1:9",))
    assert policy.domains == ("fal.media",) and policy.origins == ("http://127.0.0.1:9",)
    assert policy.max_bytes == 1000 and policy.timeout.read == 7 and policy.timeout.connect == 2
    assert knobs.api_timeout().read == 30.0
