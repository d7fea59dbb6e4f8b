"""Provider settings: one ``ProviderSettings`` class, read from the environment and a token file.

Order of precedence, highest first:

1. keyword arguments given to :func:`load_settings` / ``ProviderSettings(...)`` (flags);
2. environment variables: ``RUNCOMFY_TOKEN`` and ``RUNCOMFY_MODEL_API_BASE`` (the names the
   official RunComfy CLI reads; blank counts as unset), everything else as
   ``KLINGFLOW_PROVIDER_<FIELD>``;
3. for the token only: a JSON token file — ``KLINGFLOW_PROVIDER_TOKEN_FILE`` when set (and then
   only that file), else the first of ``$RUNCOMFY_CONFIG_DIR/token.json``,
   ``$XDG_CONFIG_HOME/runcomfy/token.json``, ``~/.config/runcomfy/token.json`` that exists (the
   official CLI's ``src/config.rs`` order). The file holds ``{"access_token": "..."}`` as the
   CLI writes it (``{"token": "..."}`` is read too) and must not be readable by group or others;
4. the defaults below.

The base URL is trimmed as the CLI trims it (``src/api.rs``: whitespace, then trailing ``/``).
The token is a :class:`~pydantic.SecretStr`: it never appears in a repr, a log line or an error.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.providers import retry

DEFAULT_BASE_URL: Final = "https://model-api.runcomfy.net/v1"
#: Where the official CLI keeps its login, below its configuration directory.
TOKEN_FILE_NAME: Final = "token.json"
CONFIG_DIR_NAME: Final = "runcomfy"
#: Longest token accepted (the partner nodes' ``runcomfy/config.py`` cap).
MAX_TOKEN_CHARS: Final = 8192
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

    token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("token", "RUNCOMFY_TOKEN"),
        description="the API token (wins over any token file)",
    )
    token_file: Path | None = Field(
        default=None, description="read the token from this file only (unset: the official CLI's locations)"
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        validation_alias=AliasChoices("base_url", "RUNCOMFY_MODEL_API_BASE"),
        description="another API base URL (whitespace and trailing `/` trimmed)",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="connect timeout (s)")
    read_timeout_s: float = Field(default=30.0, gt=0, description="read timeout of API calls (s)")
    download_read_timeout_s: float = Field(default=60.0, gt=0, description="read timeout of downloads (s)")
    max_attempts: int = Field(
        default=retry.DEFAULT_MAX_ATTEMPTS, ge=1, description="attempts of a call that is free to retry"
    )
    max_total_s: float = Field(
        default=retry.DEFAULT_MAX_TOTAL_S, gt=0, description="time all attempts of such a call may take (s)"
    )
    cdn_domains: tuple[str, ...] = Field(
        default=DEFAULT_CDN_DOMAINS,
        description="download allow-list: domains and their subdomains (JSON list)",
    )
    max_download_bytes: int = Field(default=MAX_DOWNLOAD_BYTES, gt=0, description="largest clip downloaded")
    duration_tolerance_s: float = Field(
        default=0.25, ge=0, description="how far a clip's duration may differ from the requested one (s)"
    )
    # Names of the image fields in the request body (*unverified*: ``image_url`` is also seen).
    start_image_field: str = Field(default="start_image_url", description="name of the start image field")
    end_image_field: str = Field(default="end_image_url", description="name of the end image field")
    allow_private_network: bool = Field(
        default=False,
        description="`1`: allow CDN names that resolve to loopback/private/link-local addresses (an "
        "on-premise proxy, a realistic sandbox on this machine)",
    )

    @field_validator("token", mode="after")
    @classmethod
    def _clean_token(cls, value: SecretStr | None) -> SecretStr | None:
        # A blank RUNCOMFY_TOKEN counts as unset, as in the CLI; the message never shows the value.
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(check_token(value.get_secret_value()))

    @field_validator("token_file", mode="before")
    @classmethod
    def _blank_token_file(cls, value: object) -> object:
        # KLINGFLOW_PROVIDER_TOKEN_FILE="" means "not set", not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("base_url", mode="after")
    @classmethod
    def _trim_base_url(cls, value: str) -> str:
        return trim_base_url(value)

    @model_validator(mode="after")
    def _token_from_file(self) -> ProviderSettings:
        if self.token is None:
            found = read_token_file(self.token_file) if self.token_file else find_token()
            if found is not None:
                # The model is frozen; this runs during validation, before anyone can see it.
                object.__setattr__(self, "token", found)
        return self

    @property
    def has_token(self) -> bool:
        """True when a non-empty token is configured."""
        return self.token is not None and bool(self.token.get_secret_value().strip())


def trim_base_url(value: str) -> str:
    """``value`` without surrounding whitespace and trailing slashes; blank → the default base.

    The official CLI's ``base_from_env`` in ``src/api.rs`` does exactly this.
    """
    trimmed = value.strip().rstrip("/")
    return trimmed or DEFAULT_BASE_URL


def check_token(value: str) -> str:
    """``value`` stripped; ValueError when it cannot be an HTTP bearer token.

    Like the partner nodes' ``validate_token`` (``runcomfy/config.py``): printable ASCII without
    whitespace, at most :data:`MAX_TOKEN_CHARS`. The message never repeats the value.
    """
    token = value.strip()
    if len(token) > MAX_TOKEN_CHARS or any(not 33 <= ord(c) <= 126 for c in token):
        raise ValueError("the token must be printable ASCII without spaces (check for a pasted line break)")
    return token


def token_file_candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where the official CLI's ``src/config.rs`` looks for ``token.json``, in order.

    ``$RUNCOMFY_CONFIG_DIR``, ``$XDG_CONFIG_HOME/runcomfy``, ``~/.config/runcomfy``; empty
    variables are skipped, as the CLI skips them.
    """
    env = os.environ if env is None else env
    dirs: list[Path] = []
    if custom := env.get("RUNCOMFY_CONFIG_DIR", ""):
        dirs.append(Path(custom).expanduser())
    if xdg := env.get("XDG_CONFIG_HOME", ""):
        dirs.append(Path(xdg).expanduser() / CONFIG_DIR_NAME)
    dirs.append(Path("~/.config").expanduser() / CONFIG_DIR_NAME)
    return [d / TOKEN_FILE_NAME for d in dict.fromkeys(dirs)]


def find_token(env: Mapping[str, str] | None = None) -> SecretStr | None:
    """The token of the first existing file among :func:`token_file_candidates`, or None."""
    for path in token_file_candidates(env):
        if path.is_file():
            return read_token_file(path)
    return None


def read_token_file(path: Path) -> SecretStr | None:
    """The token stored in ``path``, or None if the file does not exist.

    Accepts ``{"access_token": ...}`` (what ``runcomfy login`` writes), ``{"token": ...}``
    (klingflow's older format) or a bare JSON string.

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
    value = (data.get("access_token") or data.get("token")) if isinstance(data, dict) else data
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{path}: expected {{"access_token": "..."}} (as `runcomfy login` writes it)')
    try:
        return SecretStr(check_token(value))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_settings(**overrides: object) -> ProviderSettings:
    """Build settings (overrides > environment > token file > defaults); ConfigError if invalid."""
    from pipeline.settings import load_section

    settings: ProviderSettings = load_section("provider", ProviderSettings, overrides)
    return settings
