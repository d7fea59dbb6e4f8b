"""fal.ai settings: the key, the queue's base URL, and the wire facts fal's pages leave open.

Read from the environment: ``FAL_KEY`` (the name fal's own clients read, ``fal_client/auth.py``)
and ``KLINGFLOW_FAL_<FIELD>`` for the rest. Each field whose default is a fact the sources do not
settle says so in its description (the README lists them): the shape of a shot's ``duration``
inside ``multi_prompt``, the field and prompt token of provider voices, and the modes in which
``elements`` are sent. The key is a :class:`~pydantic.SecretStr`: never in a repr, log or error.
"""

from __future__ import annotations

from typing import Final

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.providers.http_knobs import HttpKnobs

#: fal's queue (``fal_client/client.py``: ``QUEUE_URL_FORMAT = https://queue.fal.run/``).
DEFAULT_QUEUE_URL: Final = "https://queue.fal.run"
#: The Kling 3.0 apps, ``{prefix}/{tier}/{mode}`` (fal's model pages).
DEFAULT_APP_PREFIX: Final = "fal-ai/kling-video/v3"
#: Creates a provider voice from a 5–30 s clip (``fal-ai/kling-video/create-voice`` page).
DEFAULT_VOICE_APP: Final = "fal-ai/kling-video/create-voice"
#: Where fal serves results (``v3.fal.media``, ``v3b.fal.media``, … in its examples).
DEFAULT_CDN_DOMAINS: Final = ("fal.media",)


class FalSettings(HttpKnobs):
    """Everything the fal adapter needs; see the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix="KLINGFLOW_FAL_", populate_by_name=True, extra="ignore", frozen=True
    )

    key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("key", "FAL_KEY"),
        description="the fal.ai API key (`Authorization: Key …`)",
    )
    queue_url: str = Field(default=DEFAULT_QUEUE_URL, description="fal's queue base URL")
    app_prefix: str = Field(
        default=DEFAULT_APP_PREFIX, description="Kling 3.0 apps: `{prefix}/{tier}/{mode}`"
    )
    voice_app: str = Field(default=DEFAULT_VOICE_APP, description="the app that creates a voice")
    voice_wait_s: float = Field(
        default=300.0, gt=0, description="longest wait for fal to create one voice (s)"
    )
    cdn_domains: tuple[str, ...] = Field(
        default=DEFAULT_CDN_DOMAINS,
        description="download allow-list: domains and their subdomains (JSON list)",
    )
    shot_duration_as_string: bool = Field(
        default=True,
        description="*open*: a `multi_prompt` shot's `duration` as a string like the top-level one "
        "(`0`: an integer)",
    )
    voices: bool = Field(
        default=True,
        description="`0`: never create fal voices (a script's `voice:` is dropped, as the plan says)",
    )
    voice_ids_field: str = Field(
        default="voice_ids", description="*open*: the request field carrying voice ids"
    )
    voice_token: str = Field(
        default="<<<voice_{n}>>>",
        description="*open*: how the prompt names voice n (Kling's own API form)",
    )
    allow_private_network: bool = Field(
        default=False,
        description="`1`: allow CDN names that resolve to loopback/private addresses (a proxy)",
    )

    @field_validator("key", mode="after")
    @classmethod
    def _blank_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A blank FAL_KEY counts as unset.
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("queue_url", mode="after")
    @classmethod
    def _trim(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @field_validator("voice_token", mode="after")
    @classmethod
    def _token_has_n(cls, value: str) -> str:
        if "{n}" not in value:
            raise ValueError("must contain {n}, where the voice's number goes")
        return value

    @property
    def has_key(self) -> bool:
        """Whether a key is configured."""
        return self.key is not None


def load_fal_settings(**overrides: object) -> FalSettings:
    """fal's settings from the environment (``overrides`` win); ConfigError (78) naming each bad
    variable, never its value (it may be the key)."""
    try:
        return FalSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            env = "FAL_KEY" if field == "key" else f"KLINGFLOW_FAL_{field.upper()}"
            problems.append(f"{field} ({env}): {err['msg']}" if field else err["msg"])
        raise ConfigError(f"fal settings: {'; '.join(problems)}") from None
