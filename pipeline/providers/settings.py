"""Provider settings: one ``ProviderSettings`` class, read from the environment and a token file.

Order of precedence, highest first:

1. keyword arguments given to :func:`load_settings` / ``ProviderSettings(...)`` (flags);
2. environment variables: ``RUNCOMFY_TOKEN`` and ``RUNCOMFY_MODEL_API_BASE`` (the names the
   official RunComfy CLI reads), everything else as ``KLINGFLOW_PROVIDER_<FIELD>``;
3. for the token only: the JSON token file (default ``~/.config/runcomfy/token.json``, which
   must not be readable by group or others), holding ``{"token": "..."}``;
4. the defaults below.

The token is a :class:`~pydantic.SecretStr`: it never appears in a repr, a log line or an error.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Final

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.providers import retry

DEFAULT_BASE_URL: Final = "https://model-api.runcomfy.net/v1"
DEFAULT_TOKEN_FILE: Final = Path("~/.config/runcomfy/token.json")
#: The provider's CDN domains (a host matches a domain or any of its subdomains).
DEFAULT_CDN_DOMAINS: Final = ("runcomfy.net", "runcomfy.com")
MAX_DOWNLOAD_BYTES: Final = 2 * 1024**3


class ProviderSettings(BaseSettings):
    """Everything the RunComfy adapter needs to know; see the module docstring for precedence."""

    model_config = SettingsConfigDict(
        env_prefix="KLINGFLOW_PROVIDER_",
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("token", "RUNCOMFY_TOKEN"))
    token_file: Path = DEFAULT_TOKEN_FILE
    base_url: str = Field(
        default=DEFAULT_BASE_URL, validation_alias=AliasChoices("base_url", "RUNCOMFY_MODEL_API_BASE")
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    download_read_timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=retry.DEFAULT_MAX_ATTEMPTS, ge=1)
    max_total_s: float = Field(default=retry.DEFAULT_MAX_TOTAL_S, gt=0)
    cdn_domains: tuple[str, ...] = DEFAULT_CDN_DOMAINS
    max_download_bytes: int = Field(default=MAX_DOWNLOAD_BYTES, gt=0)
    #: How far a downloaded clip's duration may differ from the requested one.
    duration_tolerance_s: float = Field(default=0.25, ge=0)
    #: Names of the image fields in the request body (*unverified*: ``image_url`` is also seen).
    start_image_field: str = "start_image_url"
    end_image_field: str = "end_image_url"

    @model_validator(mode="after")
    def _token_from_file(self) -> ProviderSettings:
        if self.token is None:
            found = read_token_file(self.token_file)
            if found is not None:
                # The model is frozen; this runs during validation, before anyone can see it.
                object.__setattr__(self, "token", found)
        return self

    @property
    def has_token(self) -> bool:
        """True when a non-empty token is configured."""
        return self.token is not None and bool(self.token.get_secret_value().strip())


def read_token_file(path: Path) -> SecretStr | None:
    """The token stored in ``path`` (``{"token": ...}`` or a bare JSON string), or None if absent.

    Raises ConfigError when the file is readable by group or others, or is not valid JSON.
    """
    path = path.expanduser()
    if not path.is_file():
        return None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: token file must be private (chmod 600), it is {oct(mode & 0o777)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # The message names the file, never its content.
        raise ConfigError(f"{path}: not a readable JSON token file") from exc
    value = data.get("token") or data.get("access_token") if isinstance(data, dict) else data
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{path}: expected {{"token": "..."}}')
    return SecretStr(value.strip())


def load_settings(**overrides: object) -> ProviderSettings:
    """Build settings (overrides > environment > token file > defaults); ConfigError if invalid."""
    try:
        return ProviderSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        # ``from None``: a ValidationError's text repeats the offending input, which may be the token.
        raise ConfigError(f"provider settings: {problems}") from None
