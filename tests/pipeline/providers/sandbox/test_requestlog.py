"""The request log: one summary per submit, images summarised and never kept."""

from __future__ import annotations

import base64
import struct
from datetime import datetime

from pipeline.providers.sandbox.images import classify
from pipeline.providers.sandbox.requestlog import RequestLog

PNG = (
    b"\x89PNG\r\n\x1a\n"
    + struct.pack(">I", 13)
    + b"IHDR"
    + struct.pack(">II", 64, 64)
    + b"\x08\x02\x00\x00\x00"
)
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
MODEL = "kling/kling-3.0/pro/image-to-video"


def test_an_accepted_submit_is_summarised_without_its_image_or_secret_url() -> None:
    log = RequestLog()
    body = {
        "prompt": "a kite",
        "duration": 5,
        "start_image_url": DATA_URI,
        "end_image_url": "https://bucket.example/x.png?X-Amz-Signature=secret",
    }
    images = {name: classify(str(body[name])) for name in ("start_image_url", "end_image_url")}

    log.record(MODEL, body, images, status=200, request_id="req-1")

    [entry] = log.entries()
    assert entry["request_id"] == "req-1" and entry["model_id"] == MODEL
    assert entry["fields"] == ["duration", "end_image_url", "prompt", "start_image_url"]
    assert entry["prompt_chars"] == len("a kite")
    assert entry["refused"] is False and entry["status"] == 200
    assert entry["images"]["start_image_url"]["kind"] == "data-uri"
    assert entry["images"]["start_image_url"]["bytes"] == len(PNG)
    assert entry["images"]["end_image_url"] == {
        "kind": "https",
        "sha256": None,
        "bytes": None,
        "mime": None,
        "host": "bucket.example",
    }
    assert datetime.fromisoformat(entry["received_at"]).tzinfo is not None
    text = repr(log.entries())
    assert "secret" not in text and base64.b64encode(PNG).decode() not in text


def test_a_refused_or_malformed_submit_is_still_logged_in_arrival_order() -> None:
    log = RequestLog()
    log.record(MODEL, {"prompt": 42}, {}, status=422)
    log.record(MODEL, ["not", "an", "object"], {}, status=422)
    log.record(MODEL, {"prompt": "ok"}, {}, status=200, request_id="req-3")

    first, second, third = log.entries()
    assert first["refused"] is True and first["request_id"] is None and first["status"] == 422
    assert first["prompt_chars"] is None  # not a string: no length to report
    assert second["fields"] == [] and second["prompt_chars"] is None
    assert third["request_id"] == "req-3" and third["refused"] is False


def test_entries_are_a_copy() -> None:
    log = RequestLog()
    log.record(MODEL, {"prompt": "p"}, {}, status=200, request_id="r")

    log.entries()[0]["status"] = 500
    log.entries().clear()

    assert [e["status"] for e in log.entries()] == [200]


def test_a_storyboard_s_seconds_and_element_images_are_logged_as_summaries() -> None:
    log = RequestLog()
    body = {"multi_prompt": [{"prompt": "a", "duration": "2"}], "elements": [{"frontal_image_url": DATA_URI}]}
    log.record(
        "fal-ai/kling-video/v3/pro/text-to-video",
        body,
        {},
        status=200,
        request_id="r1",
        dialect="fal",
        shots=[2, 3],
        elements=[[classify(DATA_URI), classify("https://cdn.example/a.png?sig=secret")]],
        voices=1,
    )
    [entry] = log.entries()
    assert entry["dialect"] == "fal" and entry["shots"] == [2, 3] and entry["voices"] == 1
    assert [i["kind"] for i in entry["elements"][0]] == ["data-uri", "https"]
    assert "secret" not in str(entry) and "base64" not in str(entry)
    log.record(MODEL, {"prompt": "x"}, {}, status=422)
    assert log.entries()[1]["dialect"] == "runcomfy" and log.entries()[1]["shots"] == []
