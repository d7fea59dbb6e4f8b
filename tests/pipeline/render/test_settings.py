"""Run settings: flags over environment over defaults; bad values are ConfigErrors naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.render.settings import RunSettings, load_run_settings


@pytest.fixture(autouse=True)
def _no_klingflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults are what these tests see, whatever the machine running them sets."""
    for name in list(os.environ):
        if name.startswith("KLINGFLOW_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_run_settings()
    assert settings.runs_dir == Path(".klingflow/runs")
    assert settings.store_url is None and settings.shared_url is None
    assert (settings.max_in_flight, settings.submit_burst, settings.max_regenerations) == (8, 4, 2)
    assert settings.submit_rate_per_s == 2.0
    assert settings.image_transport == "auto"
    assert settings.poll_latency_scale is None


def test_flags_win_over_the_environment_which_wins_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_MAX_IN_FLIGHT", "3")
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", "/srv/runs")
    settings = load_run_settings(max_in_flight=5, store_url=None)
    assert settings.max_in_flight == 5  # the flag
    assert settings.runs_dir == Path("/srv/runs")  # the environment
    assert settings.submit_burst == 4  # the default
    # A flag left unset (None) does not hide the environment.
    monkeypatch.setenv("KLINGFLOW_STORE_URL", "sqlite:///x.db")
    assert load_run_settings(store_url=None).store_url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("KLINGFLOW_MAX_IN_FLIGHT", "0", "max_in_flight"),
        ("KLINGFLOW_SUBMIT_RATE_PER_S", "0", "submit_rate_per_s"),
        ("KLINGFLOW_SANDBOX_RENDER_SCALE", "1.5", "sandbox_render_scale"),
        ("KLINGFLOW_IMAGE_TRANSPORT", "carrier-pigeon", "image_transport"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_run_settings()
    assert variable in str(info.value) and field in str(info.value)


def test_settings_are_frozen_and_give_the_sandbox_its_knobs() -> None:
    settings = RunSettings(sandbox_latency_scale=0.5, sandbox_render_scale=0.25)
    config = settings.sandbox_config()
    assert config.latency_scale == 0.5 and config.render_scale == 0.25
    with pytest.raises(ValueError, match="frozen"):
        settings.max_in_flight = 1  # type: ignore[misc]
