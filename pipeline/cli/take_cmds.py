"""``klingflow reroll``, ``takes`` and ``use``: new takes of one segment, and switching between them.

A reroll buys one request (more with ``--rebuy-following``); listing and switching buy nothing.
The logic is :mod:`pipeline.render.takes`; this module is flags, questions and output.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.output import console
from pipeline.money import format_usd

if TYPE_CHECKING:
    from pipeline.render.takebook import SegmentRef

NarrativeOpt = Annotated[str, typer.Option("--narrative", help="The narrative id.")]
VariantOpt = Annotated[str, typer.Option("--variant", help="The variant id.")]
PassOpt = Annotated[str, typer.Option("--pass", help="draft or final.")]
SegmentOpt = Annotated[int, typer.Option("--segment", min=0, help="0-based, as `segment` in plan --json.")]


def _ref(narrative: str, variant: str, pass_: str, segment: int) -> SegmentRef:
    from pipeline.render.takebook import SegmentRef

    if pass_ not in ("draft", "final"):
        raise typer.BadParameter(f"--pass is draft or final, not {pass_!r}")
    return SegmentRef(narrative, variant, pass_, segment)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    """Add ``reroll``, ``takes`` and ``use`` to ``app``."""

    @app.command()
    def reroll(
        run: Annotated[str, typer.Argument(help="The run id (see klingflow status).")],
        narrative: NarrativeOpt,
        variant: VariantOpt,
        pass_: PassOpt,
        segment: SegmentOpt,
        seed: Annotated[
            int | None, typer.Option(min=0, help="The new take's seed (default: a new one).")
        ] = None,
        keep_following: Annotated[
            bool, typer.Option(help="Keep the chained segments after it as they are (accepts a cut).")
        ] = False,
        rebuy_following: Annotated[
            bool, typer.Option(help="Buy new takes of the chained segments after it too.")
        ] = False,
        provider: Annotated[str | None, typer.Option(help="sandbox or runcomfy.")] = None,
    ) -> None:
        """Buy one new take of a segment of RUN and re-stitch its master; earlier takes are kept.

        Costs one request (the segment's price); in a chained narrative the segments after it
        start from its last frame: --rebuy-following buys them too, --keep-following keeps them.

        Example: klingflow reroll story-ab12cd34ef --narrative story --variant a --pass draft --segment 2
        """
        from pipeline.render.takes import following, open_takes
        from pipeline.settings import load_settings

        if keep_following and rebuy_following:
            raise typer.BadParameter("--keep-following and --rebuy-following exclude each other")
        ref = _ref(narrative, variant, pass_, segment)
        settings = load_settings()

        async def go() -> None:
            nonlocal rebuy_following
            async with open_takes(run, settings, provider=provider) as takes:
                later = following(takes.plan, ref)
                if later and not (keep_following or rebuy_following):
                    question = (
                        f"{later} chained segment(s) after segment {segment} start from its last frame: "
                        "buy new takes of them too?"
                    )
                    if not sys.stdin.isatty():
                        raise typer.BadParameter(
                            f"{question} No terminal to ask: pass --rebuy-following or --keep-following"
                        )
                    rebuy_following = typer.confirm(question, default=False)
                outcome = await takes.reroll(ref, seed=seed, rebuy_following=rebuy_following)
            out = console()
            for row in outcome.bought:
                out.print(
                    f"take {row.take} of segment {row.ref.segment} (seed {row.seed}): {row.request_id}, "
                    f"{format_usd(row.cost)}",
                    markup=False,
                )
            out.print(f"master take {outcome.master_take}: {outcome.master.path}", markup=False)

        asyncio.run(go())

    @app.command()
    def takes(run: Annotated[str, typer.Argument(help="The run id.")]) -> None:
        """List every take of RUN's rerolled segments with its cost; * marks the one in use (free).

        Example: klingflow takes story-ab12cd34ef
        """
        from rich.table import Table

        from pipeline.render.layout import check_run_id
        from pipeline.render.takebook import list_takes
        from pipeline.settings import load_settings

        rows = list_takes(load_settings().run.runs_dir / check_run_id(run))
        out = console()
        if not rows:
            out.print(f"run {run} has no rerolled segment: each segment has its first take", markup=False)
            return
        table = Table(box=None, padding=(0, 1), header_style="bold underline")
        for name in ("narrative", "variant", "pass", "seg", "take", "seed", "request", "cost", "in use"):
            table.add_column(name, no_wrap=True)
        for r in rows:
            table.add_row(
                r.ref.narrative, r.ref.variant, r.ref.pass_, str(r.ref.segment), str(r.take),
                "-" if r.seed is None else str(r.seed), r.request_id, format_usd(r.cost), "*" if r.current else "",
            )  # fmt: skip
        out.print(table)

    @app.command()
    def use(
        run: Annotated[str, typer.Argument(help="The run id.")],
        narrative: NarrativeOpt,
        variant: VariantOpt,
        pass_: PassOpt,
        segment: SegmentOpt,
        take: Annotated[int, typer.Option("--take", min=1, help="The take to use (see klingflow takes).")],
    ) -> None:
        """Make an earlier take of a segment current again and its master follow; buys nothing.

        Example: klingflow use story-ab12cd34ef --narrative story --variant a --pass draft --segment 2 --take 1
        """
        from pipeline.render.takes import open_takes
        from pipeline.settings import load_settings

        ref = _ref(narrative, variant, pass_, segment)
        settings = load_settings()

        async def go() -> None:
            async with open_takes(run, settings, buy=False) as takes:
                outcome = await takes.use(ref, take)
            console().print(f"master take {outcome.master_take}: {outcome.master.path} ($0.00)", markup=False)

        asyncio.run(go())
