"""Run logs and progress display of the one-call workflow and the command line."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

logger = logging.getLogger("scalex_scvi")

PACKAGES = (
    "scalex-scvi",
    "scvi-tools",
    "torch",
    "lightning",
    "anndata",
    "scanpy",
    "mudata",
    "scikit-learn",
    "scib-metrics",
    "numpy",
    "pandas",
    "umap-learn",
)


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed versions of the packages a run depends on (and of ``extra`` packages)."""
    found = {"python": platform.python_version()}
    for name in (*PACKAGES, *extra):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


class RunLog:
    """Messages of a run, written to ``log.txt`` (when a path is given) and to the logger.

    The file starts with the command line, every parameter and every package version.
    """

    def __init__(self, path: Path | None, settings: dict):
        self.path = path
        self._lines: list[str] = []
        self._write(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        self._write(f"command: {' '.join(sys.argv)}")
        self._write("parameters: " + json.dumps(settings, default=str, indent=2))
        self._write("versions: " + json.dumps(package_versions(), indent=2))

    def _write(self, line: str) -> None:
        self._lines.append(line)

    def info(self, message: str) -> None:
        """Record a message."""
        logger.info(message)
        self._write(f"[{time.strftime('%H:%M:%S')}] {message}")

    def close(self) -> None:
        """Write the log file (if any)."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("\n".join(self._lines) + "\n")


@contextmanager
def progress_steps(steps: Sequence[str], enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A rich progress bar over the named steps of a run; yields ``step(name)`` to advance."""
    if not enabled:
        yield lambda name: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=len(steps))
        started = {"n": 0}

        def step(name: str) -> None:
            if started["n"]:
                progress.advance(task)
            started["n"] += 1
            progress.update(task, description=name)

        yield step
        progress.advance(task)
        progress.update(task, description="done")
