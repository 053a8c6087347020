"""Progress of a run in the terminal: the CLI switches it on, the flows report stages to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

STAGES = ("extract", "transform", "load", "publish")
_shown: Progress | None = None
_tasks: dict[str, TaskID] = {}


@contextmanager
def shown(enabled: bool) -> Iterator[None]:
    """Show one bar per source on stderr while the block runs (when `enabled`)."""
    global _shown
    if not enabled:
        yield
        return
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.fields[stage]:<22}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    _tasks.clear()
    with progress:
        _shown = progress
        try:
            yield
        finally:
            _shown = None


def stage(source: str, name: str) -> None:
    """Mark `source` as entering stage `name` (one of STAGES), or finished: done/skipped/failed."""
    if _shown is None:
        return
    if source not in _tasks:
        _tasks[source] = _shown.add_task(source, total=len(STAGES), stage="")
    task = _tasks[source]
    if name in STAGES:
        _shown.update(task, completed=STAGES.index(name), stage=name)
    else:
        _shown.update(task, completed=len(STAGES), stage=name)
