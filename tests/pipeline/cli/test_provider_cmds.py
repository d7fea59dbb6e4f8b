"""``klingflow generate`` and ``klingflow sandbox serve`` (:mod:`pipeline.cli.provider_cmds`).

Only what is decided before any provider is opened: a real ``generate`` on the in-process sandbox
renders a 1080p clip with ffmpeg (about 8 s here), too slow for this module; the provider tests
and the sandbox's own tests buy clips.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from pipeline.cli import main, provider_cmds
from pipeline.errors import EXIT_CONFIG, EXIT_USAGE
from pipeline.generation import ASPECT_RATIOS, MAX_DURATION, MIN_DURATION

if TYPE_CHECKING:
    from pipeline.providers.jobs import JobReport


@pytest.mark.parametrize(
    "args",
    [
        ["generate"],  # --prompt is required
        ["generate", "--prompt", "a kite", "--duration", str(MIN_DURATION - 1)],
        ["generate", "--prompt", "a kite", "--duration", str(MAX_DURATION + 1)],
        ["generate", "--prompt", "a kite", "--tier", "ultra"],
        ["generate", "--prompt", "a kite", "--aspect-ratio", "5:4"],
        ["generate", "--prompt", "a kite", "--cfg-scale", "1.5"],
        ["generate", "--prompt", "a kite", "--seed", "-1"],
        ["generate", "--prompt", "a kite", "--provider", "elsewhere"],
        ["generate", "--prompt", "a kite", "--latency-scale", "-1"],
        ["sandbox", "serve", "--port", "70000"],
        ["sandbox", "serve", "--fault-server-error", "1.5"],
        ["sandbox", "serve", "--max-in-flight", "0"],
    ],
)
def test_bad_options_are_usage_errors(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written where the test runs
    assert main(args) == EXIT_USAGE
    assert "Usage" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
def test_tls_cert_and_key_go_together(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server must not start")

    monkeypatch.setattr("pipeline.providers.sandbox.server.serve", no_server)
    pem = tmp_path / "one.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    code = main(["sandbox", "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), given, str(pem)])
    assert code == EXIT_CONFIG
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


def test_aspect_ratio_choices_are_the_generation_ones() -> None:
    assert [a.value for a in provider_cmds.AspectRatio] == list(ASPECT_RATIOS)
    assert provider_cmds.DEFAULT_ASPECT.value == "16:9"


def test_fault_options_keep_each_rate_in_its_place() -> None:
    faults = provider_cmds._fault_options(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 9)
    assert faults == {
        "rate_limit": 0.1, "server_error": 0.2, "error_in_200": 0.3, "drop": 0.4, "fail": 0.5,
        "truncate": 0.6, "corrupt": 0.7, "slow": 0.8, "seed": 9,
    }  # fmt: skip
    from pipeline.providers.sandbox.config import FaultConfig

    FaultConfig(**faults)  # every name is a FaultConfig field


def test_print_report(capsys: pytest.CaptureFixture[str]) -> None:
    clip = SimpleNamespace(
        path=Path("/clips/r-1.mp4"), size=1234, sha256="ab" * 32, duration=3.0, width=1920, height=1080,
        has_audio=True,
    )  # fmt: skip
    report: Any = SimpleNamespace(
        request_id="r-1", clip=clip, result=SimpleNamespace(cost_usd=Decimal("0.252")), error=None
    )
    provider_cmds._print_report(cast("JobReport", report))
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "request:    r-1",
        "file:       /clips/r-1.mp4",
        "size:       1234 bytes",
        f"sha256:     {'ab' * 32}",
        "duration:   3.000 s",
        "resolution: 1920x1080",
        "audio:      yes",
        "cost:       $0.252",
    ]
