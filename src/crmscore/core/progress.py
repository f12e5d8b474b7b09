"""Progress display for long steps: a spinner with elapsed time on a terminal, log lines always."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

__all__ = ["stage", "timed_stage"]

log = logging.getLogger("crmscore")
_console = Console(stderr=True)


@contextmanager
def stage(what: str) -> Iterator[None]:
    """Show ``what`` while the block runs, then log how long it took.

    On a terminal a spinner shows the elapsed time; elsewhere (CI, cron) only the log
    lines appear, so batch logs stay readable.
    """
    start = time.perf_counter()
    if sys.stderr.isatty():
        with _console.status(f"{what} …", spinner="dots"):
            yield
    else:
        log.info("%s …", what)
        yield
    log.info("%s: done in %.1f s", what, time.perf_counter() - start)


@contextmanager
def timed_stage(key: str, what: str, timings: dict[str, float] | None) -> Iterator[None]:
    """:func:`stage` that also adds the block's wall time to ``timings[key]`` (when given)."""
    start = time.perf_counter()
    with stage(what):
        yield
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
