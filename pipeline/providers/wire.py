"""The RunComfy Model API's JSON payloads, as pydantic models shared by the adapter and the sandbox.

The adapter parses answers with these models (lenient: unknown fields ignored, the spellings
the docs warn about accepted); the sandbox builds its answers with the same models, so the two
cannot drift apart silently. See shared/docs/provider-api.md.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import UpstreamError

#: Status words the API documents (the sandbox only emits these).
IN_QUEUE: Final = "in_queue"
IN_PROGRESS: Final = "in_progress"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

#: Cancel outcomes.
OUTCOME_CANCELLED: Final = "cancelled"
OUTCOME_NOT_CANCELLABLE: Final = "not_cancellable"

#: Six-digit error codes seen in the wild.
CODE_BAD_MODEL: Final = 400001
CODE_NO_BALANCE: Final = 400002
CODE_UNAUTHENTICATED: Final = 401001  # *unverified*: only 403001 is documented
CODE_PERMISSION_DENIED: Final = 403001
CODE_NOT_FOUND: Final = 404001
CODE_VALIDATION: Final = 422001
CODE_RATE_LIMITED: Final = 429001  # *unverified*: rate limits are not published
CODE_INTERNAL: Final = 500001


class UnreadableAnswer(UpstreamError):
    """A 2xx answer that cannot be read: not JSON, not the documented shape, or an HTTP 200
    carrying a server-side ``error_code`` (5xx class).

    Retried like any 5xx; the poller counts them and stops waiting after a few in a row
    (:data:`pipeline.providers.polling.MAX_UNREADABLE_ANSWERS`), leaving the request followed.
    """


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SubmitAnswer(_Wire):
    """``POST /v1/models/{model_id}`` → the new request and where to follow it."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


class StatusAnswer(_Wire):
    """``GET /v1/requests/{id}/status``."""

    request_id: str
    status: str
    queue_position: int | None = None
    status_url: str | None = None
    result_url: str | None = None


class ResultAnswer(_Wire):
    """``GET /v1/requests/{id}/result``; while unfinished only ``status`` is meaningful."""

    request_id: str
    status: str
    output: dict[str, Any] | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    error: Any = None
    cost: Decimal | None = None

    @field_validator("cost", mode="before")
    @classmethod
    def _cost_as_text(cls, value: object) -> object:
        # A float like 0.42 must not become Decimal('0.419999...'): go through its repr.
        return str(value) if isinstance(value, float) else value

    def video_urls(self) -> tuple[str, ...]:
        """URLs under ``output.video`` (a string) or ``output.videos`` (strings or ``{url}``)."""
        if not self.output:
            return ()
        urls: list[str] = []
        single = self.output.get("video")
        if isinstance(single, str):
            urls.append(single)
        elif isinstance(single, dict) and isinstance(single.get("url"), str):
            urls.append(single["url"])
        many = self.output.get("videos")
        if isinstance(many, list):
            for item in many:
                if isinstance(item, str):
                    urls.append(item)
                elif isinstance(item, dict) and isinstance(item.get("url"), str):
                    urls.append(item["url"])
        return tuple(dict.fromkeys(urls))  # de-duplicated, order kept

    def error_text(self) -> str | None:
        """The ``error`` field as one line of text, whatever shape it came in."""
        if self.error in (None, "", {}):
            return None
        if isinstance(self.error, dict):
            for key in ("message", "error_message", "detail"):
                if self.error.get(key):
                    return str(self.error[key])
        return str(self.error)


class CancelAnswer(_Wire):
    """``POST /v1/requests/{id}/cancel``; ``outcome`` may be missing (then ``status`` tells)."""

    request_id: str
    status: str | None = None
    outcome: str | None = None


class ErrorBody(_Wire):
    """``{error_code, error_message, detail?}``: on 4xx/5xx, and sometimes on HTTP 200."""

    error_code: int
    error_message: str = ""
    detail: Any = None


def _price(value: object) -> object:
    # JSON booleans are ints to pydantic: True must not read as a price of $1.
    if isinstance(value, bool):
        raise ValueError("a price must be a number")
    return str(value) if isinstance(value, float) else value


class ModelInfo(_Wire):
    """``GET /v1/models/{model_id}``: the model's price and, where published, its input schema.

    The catalog names the schema ``input_schema`` (read by the partner nodes'
    ``scripts/update_model_catalog.py``); ``schema`` is accepted too. The audio price has no
    documented name: the spellings below are accepted, and only checked when present.
    """

    model_id: str
    base_price_usd: Decimal | None = None
    price_unit: str | None = None
    audio_price_usd: Decimal | None = Field(
        default=None,
        validation_alias=AliasChoices("audio_price_usd", "price_with_audio_usd", "base_price_with_audio_usd"),
    )
    input_schema: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("input_schema", "schema")
    )
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_price_usd", "audio_price_usd", mode="before")
    @classmethod
    def _price_as_text(cls, value: object) -> object:
        return _price(value)
