"""Finding a process's children on Linux (from /proc), to stop what a process started."""

from __future__ import annotations

import contextlib
from pathlib import Path


def descendants(pid: int, *, direct_only: bool = False) -> list[int]:
    """The living children of ``pid`` and, unless ``direct_only``, theirs, recursively."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    if direct_only:
        return children.get(pid, [])
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
