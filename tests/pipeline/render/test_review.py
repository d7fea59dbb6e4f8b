"""The review page of real runs (a 3-variant run, and a run whose every generation failed),
checked in a real browser; and the reasons a variant was or was not promoted.

The browser is Debian's ``chromium`` driven through its command line (``--headless
--dump-dom`` and ``--screenshot``), not playwright: CI installs the same package
(``scripts/install-system.sh --dev``), playwright's own browser builds cannot be downloaded
here, and the command line needs no Python dependency for one test. What the browser itself
must judge (a poster image decodes) is asked by a small script injected into a copy of the page,
which writes its verdict into the DOM that ``--dump-dom`` prints once ``--virtual-time-budget``
has let the page load.

Set ``KLINGFLOW_REVIEW_SCREENSHOTS=docs`` to write the screenshots the README links
(``docs/review-page.png``, ``docs/review-page-failed.png``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from pipeline.errors import InputError
from pipeline.media.qc import Finding, QCReport, QCThresholds
from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from pipeline.render.layout import RunLayout
from pipeline.render.masters import MasterOutcome
from pipeline.render.review import promotions, report_name, review_input
from pipeline.render.run import RenderRun
from pipeline.render.session import open_run
from pipeline.script.loader import load_script, parse_script

from .conftest import SCALE
from .test_engine import settings_for

THREE_VARIANTS = """\
version: 1
name: review-page
defaults: {{audio: true, style: "test card"}}
narratives:
  - id: lighthouse
    shots:
      - {{duration: 4, action: "the lighthouse at dusk", dialogue: [{{speaker: Mara, line: "Hold the light steady."}}]}}
      - {{duration: 3, action: "the lamp turns"}}
variants:
  - id: a
  - id: b
    overrides: {{seed: 2, style: "warm film"}}
  - id: c
    overrides: {{seed: 3}}
budget: {{limit_usd: 20, finals: 1, select: {select}}}
output: {{archive: {archive}}}
"""


def _script(tmp_path: Path, select: str = "auto") -> Path:
    path = tmp_path / "review-page.yaml"
    path.write_text(THREE_VARIANTS.format(select=select, archive=tmp_path / "archive"), encoding="utf-8")
    return path


# --- why a variant was promoted (no rendering) ------------------------------------------------


def _qc(passed: bool) -> QCReport:
    findings = () if passed else (Finding(kind="black", detail="2.0 s of black"),)
    return QCReport(
        path="m.mp4",
        passed=passed,
        findings=findings,
        duration_s=7.0,
        video_s=7.0,
        audio_s=None,
        has_audio=False,
        frame_rate=24.0,
        integrated_lufs=None,
        true_peak_dbtp=None,
        loudness_range_lu=None,
        expect_duration_s=7.0,
        expect_audio=False,
        thresholds=QCThresholds(),
    )


def _draft(variant: str, *, passed: bool = True, error: str | None = None) -> MasterOutcome:
    return MasterOutcome(
        "lighthouse",
        variant,
        "draft",
        Path("."),
        path=None if error else Path("master.mp4"),
        qc=None if error else _qc(passed),
        error=error,
    )


def test_each_variant_says_why_it_was_or_was_not_promoted(tmp_path: Path) -> None:
    plan = build_plan(load_script(_script(tmp_path)).script)
    drafts = [_draft("a", passed=False), _draft("b"), _draft("c", error="segment 0: failed")]
    why = promotions(plan, drafts, ["b"])
    assert why["b"].promoted and "passed QC" in why["b"].reason
    assert not why["a"].promoted and "failed QC (black)" in why["a"].reason
    assert not why["c"].promoted and "could not be made" in why["c"].reason
    assert promotions(plan, [_draft("a"), _draft("b")], ["a"])["b"].reason == (
        "select: auto — its draft masters passed QC, but the budget allows 1 final, given to a"
    )
    assert all(p.promoted is None for p in promotions(plan, drafts, None).values())
    manual = build_plan(
        parse_script(_script(tmp_path, "manual").read_bytes(), file="s.yaml", base_dir=tmp_path).script
    )
    assert promotions(manual, drafts, ["a"])["c"].reason == "select: manual — not chosen"


def test_a_run_that_stopped_is_failed_with_its_reason(tmp_path: Path) -> None:
    loaded = load_script(_script(tmp_path))
    run = SimpleNamespace(
        plan=build_plan(loaded.script),
        run_id="r1",
        loaded=loaded,
        engine=SimpleNamespace(provider=SimpleNamespace(name="sandbox")),
    )
    page = review_input(run, None, generated_at=datetime(2026, 11, 30, 5, 13, tzinfo=UTC), failure="boom")  # type: ignore[arg-type]
    assert (page.status, page.failure, page.provider) == ("failed", "boom", "sandbox")
    assert {v.id: v.overrides for v in page.variants}["b"] == {"seed": "2", "style": "warm film"}
    assert [r.status for r in page.plan] == ["not run"] * len(page.plan)
    assert report_name(datetime(2026, 11, 30, 5, 13, tzinfo=UTC)) == "report-20261130T051300Z.html"


def test_a_run_that_raises_leaves_a_page_saying_why(tmp_path: Path) -> None:
    loaded = load_script(_script(tmp_path))

    async def stages() -> None:
        raise InputError("select: manual needs a choice")

    run = SimpleNamespace(
        plan=build_plan(loaded.script),
        run_id="r1",
        loaded=loaded,
        engine=SimpleNamespace(provider=SimpleNamespace(name="sandbox")),
        layout=RunLayout(tmp_path / "runs" / "r1"),
        stages=stages,
    )
    with pytest.raises(InputError):
        asyncio.run(RenderRun.execute(run))  # type: ignore[arg-type]
    html = run.layout.report.read_text(encoding="utf-8")
    assert "The run delivered nothing." in html and "select: manual needs a choice" in html


# --- real runs in a real browser ------------------------------------------------------------------

#: Injected into a copy of the page: decodes every poster and image, and writes what it found.
CHECK_SCRIPT = """
<script>
window.addEventListener("load", async () => {
  const urls = [...document.querySelectorAll("video")].map(v => v.getAttribute("poster"))
    .concat([...document.querySelectorAll("img")].map(i => i.getAttribute("src")));
  const loaded = await Promise.all(urls.map(u => new Promise(ok => {
    if (!u) { ok({url: u, width: 0}); return; }
    const image = new Image();
    image.onload = () => ok({url: u, width: image.naturalWidth});
    image.onerror = () => ok({url: u, width: 0});
    image.src = u;
  })));
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(loaded);
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is missing: install it with scripts/install-system.sh --dev")
    return found


def _browse(page: Path, tmp_path: Path, *args: str) -> str:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
        *args, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Page(HTMLParser):
    """Videos (src, poster) and links (href, src) of the DOM the browser printed."""

    def __init__(self) -> None:
        super().__init__()
        self.videos: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.check: str = ""
        self._in_check = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "video":
            self.videos.append(values)
        self.links += [v for k, v in attrs if k in {"href", "src", "poster"} and v]
        self._in_check = tag == "pre" and values.get("id") == "browser-check"

    def handle_data(self, data: str) -> None:
        if self._in_check:
            self.check += data


def check_in_browser(report: Path, tmp_path: Path, screenshot: Path, height: int) -> _Page:
    """Render the page in Chromium: every ``<video>`` has a poster the browser decodes, every
    link resolves to a file, and a screenshot is taken."""
    probe_page = report.with_name(".browser-check.html")
    probe_page.write_text(report.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"))
    try:
        parsed = _Page()
        parsed.feed(_browse(probe_page, tmp_path, "--dump-dom"))
    finally:
        probe_page.unlink()
    for video in parsed.videos:
        assert video.get("poster"), f"a <video> without a poster: {video}"
    decoded = json.loads(parsed.check or "[]")
    assert len(decoded) >= len(parsed.videos)
    for image in decoded:
        assert image["width"] > 0, f"the browser could not show {image['url']}"
    for link in parsed.links:
        url = urlparse(link)
        assert url.scheme in {"", "file"}, link  # self-contained: nothing fetched from elsewhere
        target = Path(unquote(url.path)) if url.scheme else report.parent / unquote(url.path)
        assert target.resolve().is_file(), f"{link} does not resolve"
    _browse(report, tmp_path, f"--screenshot={screenshot}", f"--window-size=1400,{height}")
    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get("KLINGFLOW_REVIEW_SCREENSHOTS")
    if keep:
        shutil.copyfile(screenshot, Path(keep) / screenshot.name)
    return parsed


def _render(script: Path, tmp_path: Path, handle: SandboxHandle) -> Any:
    loaded = load_script(script)
    plan = build_plan(loaded.script)

    async def run() -> Any:
        settings = settings_for(tmp_path, handle)
        async with open_run(loaded, plan, run_id="r1", settings=settings, provider="sandbox") as session:
            return await session.run.execute()

    return asyncio.run(run())


@pytest.mark.slow
def test_the_review_page_of_a_three_variant_run(tmp_path: Path, sandbox: SandboxHandle) -> None:
    result = _render(_script(tmp_path), tmp_path, sandbox)
    html = result.report.read_text(encoding="utf-8")
    parsed = check_in_browser(result.report, tmp_path, tmp_path / "review-page.png", 1520)
    # A player per master: three drafts and the one promoted final, side by side per variant.
    assert len(parsed.videos) == len(result.masters) == 4
    assert html.count('class="variant"') == 3
    assert "promoted</span>" in html and "overrides: <code>seed=2</code>" in html
    assert "charged of" in html and "Per variant" in html
    # The page is archived beside the masters, under a key of its own.
    assert result.report_archived and Path(result.report_archived).is_file()
    assert Path(result.report_archived).parent == tmp_path / "archive" / "review-page" / "r1"


@pytest.mark.slow
def test_the_review_page_of_a_failed_run_says_why(tmp_path: Path) -> None:
    faults = FaultConfig(fail=1.0, seed=1)
    config = SandboxConfig(latency_scale=SCALE, render_scale=0.1, slots=16, faults=faults)
    with run_sandbox(config) as handle:
        result = _render(_script(tmp_path), tmp_path, handle)
    assert not any(m.delivered for m in result.masters)
    html = result.report.read_text(encoding="utf-8")
    assert "The run delivered nothing." in html
    assert html.count("Not made:") == 3  # each draft master, with its reason
    check_in_browser(result.report, tmp_path, tmp_path / "review-page-failed.png", 720)
