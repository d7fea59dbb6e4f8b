"""The HTML run report."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from pipeline.media.qc import Finding, QCReport, QCThresholds
from pipeline.media.report import MasterEntry, PlanRow, ReportInput, failing, write_report


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in {"href", "src"} and v]


def _qc(path: str, findings: tuple[Finding, ...]) -> QCReport:
    return QCReport(
        path=path,
        passed=not findings,
        findings=findings,
        duration_s=7.0,
        video_s=7.0,
        audio_s=7.0,
        has_audio=True,
        frame_rate=24.0,
        integrated_lufs=-16.2,
        true_peak_dbtp=-3.0,
        loudness_range_lu=2.0,
        expect_duration_s=7.0,
        expect_audio=True,
        thresholds=QCThresholds(),
    )


def test_report_links_media_relatively_and_escapes_text(tmp_path: Path) -> None:
    media = tmp_path / "masters"
    media.mkdir()
    (media / "atlantic a.mp4").write_bytes(b"x")
    (media / "atlantic a.png").write_bytes(b"x")
    black = Finding(kind="black", start_s=1.0, end_s=2.5, detail="1.50 s of <black>")
    run = ReportInput(
        script_name="summer<script>alert(1)</script>",
        run_id="r-1",
        plan=(
            PlanRow(
                narrative="atlantic",
                variant="a",
                pass_name="draft",
                segment=0,
                tier="standard",
                duration_s=5,
                audio=False,
                cost_usd=Decimal("0.42"),
            ),
            PlanRow(
                narrative="atlantic",
                variant="a",
                pass_name="final",
                segment=0,
                tier="pro",
                duration_s=5,
                audio=True,
                cost_usd=Decimal("0.672"),
            ),
        ),
        spend_usd=Decimal("1.092"),
        budget_usd=Decimal(40),
        masters=(
            MasterEntry(
                narrative="atlantic",
                variant="a",
                video=str(media / "atlantic a.mp4"),
                contact_sheet=str(media / "atlantic a.png"),
                duration_s=7.0,
                qc=_qc(str(media / "atlantic a.mp4"), (black,)),
            ),
        ),
    )
    out = write_report(run, tmp_path / "reports" / "run.html")
    html = out.read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "summer&lt;script&gt;" in html
    assert "1.50 s of &lt;black&gt;" in html
    assert "QC failed" in html
    # pipeline.money.format_usd: totals to the cent (half up), a request's cost exactly.
    assert "$1.09</strong> spent of a $40.00 budget\n  (3%)" in html
    assert "plan total $1.09, draft $0.42, final $0.67." in html
    assert ">$0.42<" in html and ">$0.672<" in html
    parser = _Links()
    parser.feed(html)
    assert parser.links
    for link in parser.links:
        assert not link.startswith("/")
        target = (out.parent / link.replace("%20", " ")).resolve()
        assert target.is_file(), link
    assert failing(run.masters) == list(run.masters)
