"""Wall time and peak memory of a block of code."""

from __future__ import annotations

import os
import threading
import time


def _rss_mib() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


class Resources:
    """Context manager measuring wall time and the peak increase of resident memory.

    A thread samples the process's resident memory every ``interval`` seconds, so memory held
    by numpy, torch and native libraries is seen (unlike :mod:`tracemalloc`). After the block,
    ``wall_s`` holds the elapsed seconds and ``peak_mib`` the largest resident size seen minus
    the size on entry.
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.wall_s = float("nan")
        self.peak_mib = float("nan")

    def __enter__(self) -> Resources:
        self._start_mib = _rss_mib()
        self._peak = self._start_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._start = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_mib())
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._start
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self._peak, _rss_mib()) - self._start_mib
