"""Takes: rerolling one segment of a run, keeping every earlier take, and switching between them.

A reroll buys one new take of a segment (the same request with another seed) and re-stitches
the master with it; every take's clip stays on disk (``clips/…/seg-003.take-2.mp4``, take 1 being
the run's own ``seg-003.mp4``). ``use`` makes another recorded take current and buys nothing.

Each distinct choice of takes is a *master take*, numbered in the order it was first made; its
files are kept in the pass directory's ``.takes/take-M/`` so that switching back restores them
byte for byte (an archive key, once written, never gets a different file). The master's
manifest records its take and each segment's take; the archiver puts a take after the first
under ``…/{pass}/take-M/``.

The book of takes (:mod:`pipeline.render.takebook`) is ``{run}/takes.json``, written atomically;
the run's lock is held while it changes (a reroll opens the run; ``use`` takes the lock itself).
A rerun of the run keeps each rerolled master's chosen take (``RenderRun.master_work``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, InputNotFound, RunIncomplete
from pipeline.planning.plan import Pass, PlannedRequest, RenderPlan
from pipeline.render.engine import Engine
from pipeline.render.layout import RunLayout, check_run_id
from pipeline.render.library_plan import plan_with_library
from pipeline.render.masters import Clip, MasterOutcome, make_master
from pipeline.render.run import plan_summary
from pipeline.render.runlock import hold_run
from pipeline.render.session import open_run
from pipeline.render.takebook import (
    SegmentRef,
    TakeRow,
    current_master,
    load_book,
    mark_takes,
    master_entry,
    save_book,
    snapshot,
    take_row,
)
from pipeline.script.loader import LoadedScript, load_script
from pipeline.settings import Settings

#: Seeds a reroll draws from when none is given (the script's range: 0 … 2**32 - 1).
SEED_LIMIT = 2**32


@dataclass(frozen=True)
class TakeLayout(RunLayout):
    """A run's layout whose clips and frames are those of take ``take`` (> 1)."""

    take: int = 2

    def clip(self, narrative: str, variant: str, pass_: Pass, segment: int) -> Path:
        """Where this take of a segment is downloaded (beside the first take)."""
        first = super().clip(narrative, variant, pass_, segment)
        return first.with_name(f"seg-{segment:03d}.take-{self.take}.mp4")

    def last_frame(self, narrative: str, variant: str, pass_: Pass, segment: int) -> Path:
        """The last frame of this take of a segment."""
        first = super().last_frame(narrative, variant, pass_, segment)
        return first.with_name(f"seg-{segment:03d}.take-{self.take}-last.png")


def take_layout(root: Path, take: int) -> RunLayout:
    """The layout of take ``take`` (take 1 is the run's own)."""
    return RunLayout(root) if take == 1 else TakeLayout(root, take)


@dataclass(frozen=True)
class TakeOutcome:
    """What a reroll or a switch did."""

    bought: list[TakeRow]
    master: MasterOutcome
    master_take: int


# --- rerolls and switches --------------------------------------------------------------------


def master_requests(plan: RenderPlan, ref: SegmentRef) -> list[PlannedRequest]:
    """The planned requests of ``ref``'s master, in segment order (InputError when it has none)."""
    found: dict[int, PlannedRequest] = {}
    for r in (*plan.requests, *plan.candidate_finals):
        if (r.narrative, r.variant, r.pass_) == (ref.narrative, ref.variant, ref.pass_):
            found.setdefault(r.segment, r)
    if ref.segment not in found:
        raise InputError(
            f"the run plans no segment {ref.segment} of narrative {ref.narrative!r}, variant "
            f"{ref.variant!r}, pass {ref.pass_} (segments are 0-based, as in `klingflow plan --json`)"
        )
    return [found[k] for k in sorted(found)]


def following(plan: RenderPlan, ref: SegmentRef) -> int:
    """How many later segments start from this one's last frame (a chain after ``ref``)."""
    requests = master_requests(plan, ref)
    later = 0
    for r in requests[ref.segment + 1 :]:
        if not r.chained:
            break
        later += 1
    return later


@dataclass
class Takes:
    """Rerolls and switches on one run (its plan and script; its open engine for a reroll)."""

    layout: RunLayout
    plan: RenderPlan
    loaded: LoadedScript
    run_id: str
    engine: Engine | None = None

    def _request(self, requests: Sequence[PlannedRequest], entry: dict[str, Any], k: int) -> PlannedRequest:
        """Segment ``k``'s request as its current take made it (its seed)."""
        take = entry["segments"][k][entry["current"][k] - 1]
        return dataclasses.replace(requests[k], seed=take["seed"])

    async def reroll(
        self, ref: SegmentRef, *, seed: int | None = None, rebuy_following: bool = False
    ) -> TakeOutcome:
        """Buy a new take of ``ref`` (a new seed unless given; with ``rebuy_following`` new takes
        of the chained segments after it too), then re-stitch the master with it."""
        book = await asyncio.to_thread(load_book, self.layout.root)
        entry = await asyncio.to_thread(master_entry, book, self.layout, ref)
        requests = master_requests(self.plan, ref)
        later = following(self.plan, ref) if rebuy_following else 0
        bought: list[TakeRow] = []
        for k in range(ref.segment, ref.segment + later + 1):
            new_seed = (
                (seed if seed is not None else secrets.randbelow(SEED_LIMIT)) if k == ref.segment else None
            )
            request = self._request(requests, entry, k)
            if new_seed is not None:
                request = dataclasses.replace(request, seed=new_seed)
            chain = [self._request(requests, entry, j) for j in range(k)] + [request]
            bought.append(await self._buy(dataclasses.replace(ref, segment=k), entry, chain))
        outcome, master_take = await self._compose(ref, book, entry, requests)
        await asyncio.to_thread(save_book, self.layout.root, book)
        return TakeOutcome(bought, outcome, master_take)

    async def _buy(self, ref: SegmentRef, entry: dict[str, Any], chain: list[PlannedRequest]) -> TakeRow:
        assert self.engine is not None, "a reroll buys: it needs the run opened"
        request = chain[-1]
        number = len(entry["segments"][ref.segment]) + 1
        engine = dataclasses.replace(self.engine, layout=take_layout(self.layout.root, number))
        start = engine.local(request.start_image)
        if request.chained:
            previous = entry["segments"][ref.segment - 1][entry["current"][ref.segment - 1] - 1]
            frame = take_layout(self.layout.root, previous["take"]).last_frame(
                ref.narrative, ref.variant, ref.pass_, ref.segment - 1
            )
            frame.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(engine.extract_last_frame, Path(previous["file"]), frame)
            start = str(frame)
        if engine.library is not None:
            await engine.library.prepare(chain)
        result = await engine.generate(request, start)
        if result.clip is None:
            raise RunIncomplete(f"the new take of segment {ref.segment} was not delivered: {result.error}")
        clip = result.clip
        take = {
            "take": number,
            "seed": request.seed,
            "request_id": clip.request_id,
            "cost_usd": str(clip.cost if not result.reused else Decimal(0)),
            "sha256": clip.sha256,
            "file": str(clip.path),
            "created_at": time.time(),
        }
        entry["segments"][ref.segment].append(take)
        entry["current"][ref.segment] = number
        return take_row(ref, take, True)

    async def use(self, ref: SegmentRef, take: int) -> TakeOutcome:
        """Make recorded take ``take`` of ``ref`` current and the master follow; buys nothing."""
        book = await asyncio.to_thread(load_book, self.layout.root)
        entry = await asyncio.to_thread(master_entry, book, self.layout, ref)
        takes = entry["segments"][ref.segment]
        if not 1 <= take <= len(takes):
            raise InputError(f"segment {ref.segment} of {ref.master} has takes 1 to {len(takes)}, not {take}")
        entry["current"][ref.segment] = take
        outcome, master_take = await self._compose(ref, book, entry, master_requests(self.plan, ref))
        await asyncio.to_thread(save_book, self.layout.root, book)
        return TakeOutcome([], outcome, master_take)

    async def _compose(
        self, ref: SegmentRef, book: dict[str, Any], entry: dict[str, Any], requests: list[PlannedRequest]
    ) -> tuple[MasterOutcome, int]:
        """The master of the current takes: restored when this choice was made before, else
        stitched (and kept) as a new master take."""
        pass_dir = self.layout.master_dir(ref.narrative, ref.variant, ref.pass_)
        current = list(entry["current"])
        if current in entry["masters"]:
            await asyncio.to_thread(save_book, self.layout.root, book)  # current_master reads it
            outcome = await asyncio.to_thread(
                current_master, self.layout, ref.narrative, ref.variant, ref.pass_
            )
            return outcome, entry["masters"].index(current) + 1
        entry["masters"].append(current)
        number = len(entry["masters"])
        clips = []
        for k in range(len(requests)):
            take = entry["segments"][k][current[k] - 1]
            clips.append(
                Clip(
                    self._request(requests, entry, k),
                    Path(take["file"]),
                    take["sha256"],
                    take["request_id"],
                    Decimal(take["cost_usd"]),
                )
            )
        narrative = next(n for n in self.loaded.script.narratives if n.id == ref.narrative)
        outcome = await asyncio.to_thread(
            make_master,
            script=self.loaded.script,
            script_sha256=self.loaded.sha256,
            run_id=self.run_id,
            narrative=narrative,
            plan=next(n for n in self.plan.narratives if n.id == ref.narrative),
            clips=clips,
            directory=pass_dir,
            plan_summary=plan_summary(self.plan, [c.request for c in clips]),
            started_at=datetime.now(UTC),
        )
        if not outcome.delivered:
            raise RunIncomplete(f"the master of {ref.master} could not be made: {outcome.error}")
        await asyncio.to_thread(mark_takes, pass_dir, number, current)
        await asyncio.to_thread(snapshot, pass_dir, number)
        return outcome, number


# --- opening a run for its takes ---------------------------------------------------------------


def run_script(layout: RunLayout) -> LoadedScript:
    """The script a run was made from, reloaded from where the run recorded it and checked to be
    the same bytes (InputNotFound: no such run; InputError: the script changed since)."""
    info_path = layout.masters_dir / "run.json"
    if not info_path.is_file():
        raise InputNotFound(f"{info_path}: no such file ({layout.root} is not a run that made masters)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if "script_file" not in info:
        raise InputError(f"{info_path}: records no script_file (made by an older klingflow: run it again)")
    loaded = load_script(info["script_file"])
    if loaded.sha256 != info.get("script_sha256"):
        raise InputError(
            f"{info['script_file']} changed since run {layout.root.name} was made: rerolls and takes "
            "need the script the run was made from (run the edited script as a new run instead)"
        )
    return loaded


@contextlib.asynccontextmanager
async def open_takes(
    run_id: str, settings: Settings, *, provider: str | None = None, buy: bool = True
) -> AsyncIterator[Takes]:
    """The takes of run ``run_id``: with ``buy`` the run is opened (provider, store, library)
    for a reroll; without, only its lock is held (switching takes buys nothing)."""
    layout = RunLayout(settings.run.runs_dir / check_run_id(run_id))
    loaded = await asyncio.to_thread(run_script, layout)
    plan = await asyncio.to_thread(plan_with_library, loaded, settings, provider)
    if not buy:
        with hold_run(layout.root, run_id):
            yield Takes(layout, plan, loaded, run_id)
        return
    async with open_run(
        loaded,
        plan,
        run_id=run_id,
        settings=settings.run,
        provider=provider,
        provider_settings=settings.provider,
    ) as session:
        yield Takes(layout, plan, loaded, run_id, session.engine)
