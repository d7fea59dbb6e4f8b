"""All of klingflow's settings in one value, loaded once where a command or flow run starts.

:class:`Settings` holds one section per concern, each read from the environment under the names
the README documents (users' deployments depend on them; new settings follow the same naming):

- ``provider`` (:class:`~pipeline.providers.settings.ProviderSettings`): ``KLINGFLOW_PROVIDER_*``,
  plus ``RUNCOMFY_TOKEN`` and ``RUNCOMFY_MODEL_API_BASE`` (the official CLI's names) and its
  token file;
- ``s3`` (:class:`~pipeline.storage.settings.S3Settings`): ``KLINGFLOW_S3_*``;
- ``run`` (:class:`~pipeline.render.settings.RunSettings`): ``KLINGFLOW_*`` (runs directory, job
  store, limits, the sandbox a run uses);
- ``sandbox``: the in-process sandbox's :class:`~pipeline.providers.sandbox.config.SandboxConfig`
  as the run settings shape it (``KLINGFLOW_SANDBOX_LATENCY_SCALE``, ``..._RENDER_SCALE``).

:func:`load_settings` is the one loader: flags (keyword arguments, per section) over the
environment over defaults, and one :func:`describe_errors` that names the environment variable
of each bad value and never repeats the value (it may be a secret). :func:`settings_table`
renders a section's README table rows from the models' fields, so the README cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, SecretStr, ValidationError
from pydantic_core import PydanticUndefined

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.providers.fal_settings import FalSettings
    from pipeline.providers.kling_settings import KlingSettings
    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.settings import ProviderSettings
    from pipeline.render.settings import RunSettings
    from pipeline.storage.settings import S3Settings

#: A section's name as the error messages say it.
_LABELS = {
    "provider": "provider settings",
    "s3": "invalid S3 settings",
    "run": "invalid run settings",
    "kling": "invalid Kling settings",
    "fal": "invalid fal settings",
}


@dataclass(frozen=True)
class Settings:
    """Every setting, by section; see the module docstring."""

    provider: ProviderSettings
    s3: S3Settings
    run: RunSettings
    #: Kling's own API (``provider: kling``): :mod:`pipeline.providers.kling_settings`.
    kling: KlingSettings
    #: fal.ai (``provider: fal``): :mod:`pipeline.providers.fal_settings`.
    fal: FalSettings

    @property
    def sandbox(self) -> SandboxConfig:
        """The in-process sandbox a run starts (when it uses one), shaped by the run settings."""
        return self.run.sandbox_config()


def section_types() -> dict[str, type[BaseModel]]:
    """Each environment-backed section's model, by section name (imported here, when needed)."""
    from pipeline.providers.fal_settings import FalSettings
    from pipeline.providers.kling_settings import KlingSettings
    from pipeline.providers.settings import ProviderSettings
    from pipeline.render.settings import RunSettings
    from pipeline.storage.settings import S3Settings

    return {
        "provider": ProviderSettings,
        "s3": S3Settings,
        "run": RunSettings,
        "kling": KlingSettings,
        "fal": FalSettings,
    }


def load_settings(**flags: Mapping[str, object] | None) -> Settings:
    """Read every section; ``flags`` (``run={"max_in_flight": 4}``) win over the environment.

    A flag whose value is None is not given (an option left unset). Raises one ConfigError per
    bad section, naming each bad variable, never its value.
    """
    unknown = set(flags) - set(_LABELS)
    if unknown:
        raise TypeError(f"no settings section {sorted(unknown)}")
    types = section_types()
    values = {name: load_section(name, types[name], flags.get(name) or {}) for name in types}
    return Settings(**values)


def load_section(name: str, model: type[Any], overrides: Mapping[str, object]) -> Any:
    """One section from the environment with ``overrides`` on top; ConfigError if invalid."""
    try:
        return model(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # ``from None``: a ValidationError's text repeats the offending input (maybe the token).
        raise ConfigError(f"{_LABELS.get(name, name)}: {describe_errors(exc, model)}") from None


def env_name(model: type[BaseModel], field: str) -> str:
    """The environment variable a field of ``model`` is read from (its alias, if it has one)."""
    info = model.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        env = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        if env:
            return env[0]
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """``field (VARIABLE): what was expected`` for each error (the field as a flag or keyword
    names it, the variable as the environment does); the offending values are never shown."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"]]
        if not loc:  # a check across fields: its message says which
            problems.append(err["msg"])
            continue
        field = loc[0]
        where = f"{field} ({env_name(model, field)})" if field in model.model_fields else field
        if len(loc) > 1:
            where += "[" + ".".join(loc[1:]) + "]"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def _default(model: type[BaseModel], field: str) -> str:
    info = model.model_fields[field]
    value = info.default
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, SecretStr):
        return ""
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def settings_table(section: str) -> str:
    """The README's table of ``section``'s environment variables, as markdown rows (with header).

    One row per field: its variable, its default and its description (``Field(description=…)``).
    """
    model = section_types()[section]
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field, info in model.model_fields.items():
        default = _default(model, field)
        shown = f"`{default}`" if default else ""
        rows.append(f"| `{env_name(model, field)}` | {shown} | {info.description or ''} |")
    return "\n".join(rows) + "\n"


#: The sections whose tables the README carries, between ``<!-- settings:NAME -->`` markers.
README_SECTIONS = ("provider", "s3", "run", "fal", "kling")


def with_settings_tables(markdown: str) -> str:
    """``markdown`` with each ``<!-- settings:NAME -->`` … ``<!-- /settings:NAME -->`` block
    holding :func:`settings_table` of NAME (``python -m pipeline.settings README.md`` writes it).

    Raises ValueError when a section's markers are missing.
    """
    for name in README_SECTIONS:
        start, end = f"<!-- settings:{name} -->\n", f"<!-- /settings:{name} -->"
        head, found, rest = markdown.partition(start)
        if not found or end not in rest:
            raise ValueError(f"no {start.strip()} … {end} block")
        markdown = head + start + settings_table(name) + rest[rest.index(end) :]
    return markdown


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    import sys
    from pathlib import Path

    for readme in map(Path, sys.argv[1:]):
        readme.write_text(with_settings_tables(readme.read_text(encoding="utf-8")), encoding="utf-8")
