"""The HTML run report."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from pipeline.media.qc import Finding, QCReport, QCThresholds
from pipeline.media.report import (
    CostLine,
    MasterEntry,
    PlanRow,
    ReportInput,
    VariantEntry,
    cost_breakdown,
    failing,
    write_report,
)


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


def test_variants_side_by_side_with_posters_costs_and_a_failed_masters_reason(tmp_path: Path) -> None:
    for name in ("a.mp4", "a.png"):
        (tmp_path / name).write_bytes(b"x")

    def _delivered(pass_name: str, **more: object) -> MasterEntry:
        files = {"video": str(tmp_path / "a.mp4"), "poster": str(tmp_path / "a.png")}
        return MasterEntry.model_validate(
            {"narrative": "n", "variant": "a", "pass_name": pass_name, "duration_s": 5, **files, **more}
        )

    def row(variant: str, pass_name: str, cost: str, charged: str | None) -> PlanRow:
        return PlanRow(
            narrative="n", variant=variant, pass_name=pass_name, segment=0, tier="pro", duration_s=5,
            audio=False, cost_usd=Decimal(cost), charged_usd=None if charged is None else Decimal(charged),
        )  # fmt: skip

    run = ReportInput(
        script_name="s",
        run_id="r",
        status="incomplete",
        spend_usd=Decimal("1.5"),
        budget_usd=Decimal(10),
        plan=(row("a", "draft", "0.5", "0.5"), row("b", "draft", "0.5", "0"), row("a", "final", "1", "1")),
        variants=(
            VariantEntry(id="a", promoted=True, reason="select: auto — its draft masters passed QC"),
            VariantEntry(
                id="b", overrides={"seed": "2"}, promoted=False, reason="a draft master could not be made"
            ),
        ),
        masters=(
            _delivered("final", charged_usd=Decimal(1), planned_usd=Decimal(1)),
            _delivered("draft", prompts=("a <boat>",), seeds=(7,)),
            MasterEntry(
                narrative="n", variant="b", pass_name="draft", error="segment 0: request x failed: <nsfw>"
            ),
        ),
    )
    html = write_report(run, tmp_path / "report.html").read_text(encoding="utf-8")
    # One column per variant; within a column the draft comes before the final.
    a, b = html.split('<section class="variant">')[1:]
    assert a.index("draft") < a.index("final") and "promoted</span>" in a and "passed QC" in a
    assert "Not made:" in b and "failed: &lt;nsfw&gt;" in b and "<code>seed=2</code>" in b
    assert html.count('poster="a.png"') == 2 and "a &lt;boat&gt;" in html and "seed 7" in html
    assert "The run is incomplete." in html and "n / b (draft): segment 0" in html
    # Planned against charged, per pass and per variant.
    assert cost_breakdown(run.plan)["pass"] == [
        CostLine("draft", Decimal(1), Decimal("0.5")),
        CostLine("final", Decimal(1), Decimal(1)),
    ]
    assert '<td>b (draft)</td><td class="num">$0.50</td><td class="num">$0.00</td>' in html
