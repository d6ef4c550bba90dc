"""Progress for long work: a tqdm bar on a terminal, plain log lines under systemd/CI."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

__all__ = ["reporter"]

log = logging.getLogger("pitools")


def reporter(desc: str, unit: str = "it", every_s: float = 5.0) -> Callable[[int, int], None]:
    """A ``callback(done, total)`` that shows progress the way the current output allows.

    Interactive (stderr is a terminal): a tqdm bar. Otherwise a log line at most every
    `every_s` seconds and at the end, so a journal stays readable.
    """
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = None

        def tick(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return tick

    last = [0.0]

    def line(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            log.info("%s: %d/%d %s", desc, done, total, unit)

    return line
