"""Settings of Kling's own API (``provider: kling``): the key pair, base URL and open facts.

The key pair is the access key and secret key of a Kling developer account, read from
``KLING_ACCESS_KEY`` / ``KLING_SECRET_KEY`` (or ``KLINGFLOW_KLING_ACCESS_KEY`` / ``..._SECRET_KEY``);
everything else from ``KLINGFLOW_KLING_<FIELD>``. Both keys are :class:`~pydantic.SecretStr`: they
never appear in a repr, a log line or an error. Facts Kling's documentation and the clients
we read leave open are settings here (README "Kling's own API" says which).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from pipeline.providers.http_knobs import HttpKnobs

#: The API domain for servers outside China (Kling's "General Information" page; the Vercel AI
#: SDK's ``klingai-provider.ts`` default).
DEFAULT_BASE_URL: Final = "https://api-singapore.klingai.com"
#: ``model_name`` of Kling 3.0 (``kling-v3.0-t2v`` → ``kling-v3`` in ``klingai-video-model.ts``).
DEFAULT_MODEL_NAME: Final = "kling-v3"
#: A token's lifetime as the documentation's example signs it (30 minutes).
DEFAULT_TOKEN_TTL_S: Final = 1800
#: How a prompt names the n-th entry of ``element_list`` (the ``<<<element_1>>>`` template syntax
#: of Kling's Omni prompt guide; the V3 image2video page we could read does not spell it out).
DEFAULT_ELEMENT_MENTION: Final = "<<<element_{n}>>>"
#: ``tag_list`` of a created element: ``o_108`` "Other" (the tag values of the create-element
#: page; the tag only files the element in the account's library).
DEFAULT_ELEMENT_TAG: Final = "o_108"


class KlingSettings(HttpKnobs):
    """Everything the Kling adapter needs (timeouts, retries and download limits from
    :class:`~pipeline.providers.http_knobs.HttpKnobs`); see the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix="KLINGFLOW_KLING_", populate_by_name=True, extra="ignore", frozen=True
    )

    access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("access_key", "KLING_ACCESS_KEY", "KLINGFLOW_KLING_ACCESS_KEY"),
        description="the access key (the JWT's issuer)",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("secret_key", "KLING_SECRET_KEY", "KLINGFLOW_KLING_SECRET_KEY"),
        description="the secret key (signs the JWT, never sent)",
    )
    base_url: str = Field(default=DEFAULT_BASE_URL, description="the API domain (trailing `/` trimmed)")
    model_name: str = Field(default=DEFAULT_MODEL_NAME, description="`model_name` of Kling 3.0")
    token_ttl_s: int = Field(
        default=DEFAULT_TOKEN_TTL_S, ge=60, le=86400, description="lifetime of each signed JWT (s)"
    )
    external_id_max_chars: int = Field(
        default=64,
        ge=16,
        le=256,
        description="longest `external_task_id` sent; longer job ids are shortened deterministically "
        "(the documentation names no limit)",
    )
    element_mention: str = Field(
        default=DEFAULT_ELEMENT_MENTION,
        description="how a prompt refers to the n-th entry of `element_list` (`{n}` counts from 1; "
        "the documentation of 3.0 image2video does not spell it out)",
    )
    element_tag: str = Field(
        default=DEFAULT_ELEMENT_TAG, description="`tag_id` of the elements klingflow creates"
    )
    max_elements: int = Field(
        default=3,
        ge=0,
        le=7,
        description="elements one image2video request references by id; the others go as descriptions",
    )
    single_image_elements: Literal["repeat", "describe"] = Field(
        default="repeat",
        description="an element with one image: `repeat` it as its own reference image (the API wants "
        "a frontal image and 1-3 others), or `describe` it in words only",
    )
    element_poll_s: float = Field(
        default=2.0, gt=0, le=60, description="seconds between looks at an element being created"
    )
    element_timeout_s: float = Field(
        default=300.0, gt=0, description="longest wait for an element's creation (s)"
    )
    cdn_domains: tuple[str, ...] = Field(
        default=("klingai.com",),
        description="download allow-list: domains of the result videos and their subdomains (JSON list)",
    )
    allow_private_network: bool = Field(
        default=False,
        description="`1`: allow CDN names that resolve to loopback/private addresses (a proxy on premise)",
    )

    @field_validator("access_key", "secret_key", mode="after")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("element_mention", mode="after")
    @classmethod
    def _has_number(cls, value: str) -> str:
        if "{n}" not in value or value.replace("{n}", "").count("{") or value.replace("{n}", "").count("}"):
            raise ValueError("must contain `{n}` (the element's place in element_list) and no other braces")
        return value

    @field_validator("base_url", mode="after")
    @classmethod
    def _trim(cls, value: str) -> str:
        return value.strip().rstrip("/") or DEFAULT_BASE_URL

    @property
    def has_keys(self) -> bool:
        """True when both keys are configured."""
        return self.access_key is not None and self.secret_key is not None


def load_kling_settings(**overrides: object) -> KlingSettings:
    """The ``kling`` section (overrides > environment > defaults); ConfigError if invalid."""
    from pipeline.settings import load_section

    settings: KlingSettings = load_section("kling", KlingSettings, overrides)
    return settings
