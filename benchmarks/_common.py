"""Shared helpers of the benchmark scripts: data location, provenance, simple timers."""

from __future__ import annotations

import os
import platform
import resource
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc

from scalex_scvi._report import package_versions

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
# the scores and costs the panel reports shown per method (panel.md, atac.md)
SCORE_COLUMNS = [
    "Total",
    "Batch correction",
    "Bio conservation",
    "batch_entropy_mixing",
    "over_correction",
    "leiden_ari",
    "leiden_nmi",
    "wall_s",
    "peak_mib",
]
# packages the benchmarks use beyond the runtime dependencies
BENCH_PACKAGES = ("jax", "umap-learn", "harmonypy", "scanorama")


def data_dir() -> Path:
    """The data directory: $SCALEX_SCVI_DATA_DIR, else ../shared/data beside the repository."""
    return Path(os.environ.get("SCALEX_SCVI_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def read(name: str) -> ad.AnnData:
    path = data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; set SCALEX_SCVI_DATA_DIR to the data folder.")
    return ad.read_h5ad(path)


def difference_interval(a, b, paired: bool) -> tuple[float, float, float]:
    """Mean difference of ``a`` and ``b`` with its 95% t-interval (nan with one value).

    ``paired``: ``a`` and ``b`` are matched (same split and seed), the interval is that of the
    mean of ``a - b``; otherwise Welch's interval of ``mean(a) - mean(b)``.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    difference = float((a - b).mean() if paired else a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return difference, float("nan"), float("nan")
    test = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(0.95)
    return difference, float(interval.low), float(interval.high)


def interval_verdict(low: float, high: float) -> str:
    """Where an interval of a difference lies: above, below or across zero."""
    if low > 0:
        return "above"
    if high < 0:
        return "below"
    return "one seed" if np.isnan(low) else "not distinguishable"


def versions() -> dict[str, str]:
    found = package_versions(BENCH_PACKAGES)
    found.pop("python")  # reported with the machine
    return found


def provenance(extra: dict | None = None) -> str:
    """Markdown block: exact command, date, machine and package versions."""
    lines = [
        "## Provenance",
        "",
        f"- command: `{' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}",
        f"- threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"torch {_torch_threads()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
    ]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


def notes_and_provenance(out: Path, stem: str) -> str:
    """The end of a report: ``<stem>_notes.md`` beside it (decision rules written before the
    run, readings), when there is one, then :func:`provenance`."""
    notes = out / f"{stem}_notes.md"
    return (notes.read_text() + "\n" if notes.exists() else "") + provenance()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timer(store: dict, key: str):
    start = time.perf_counter()
    yield
    store[key] = time.perf_counter() - start


def pca_of_lognorm(prepared: ad.AnnData, n_comps: int = 50, seed: int = 0) -> np.ndarray:
    """PCA of the log-normalised values of the selected features (the unintegrated baseline)."""
    lognorm = prepared.raw[:, prepared.var_names].X if prepared.raw is not None else prepared.X
    tmp = ad.AnnData(lognorm.copy())
    sc.pp.scale(tmp, max_value=10)
    sc.tl.pca(tmp, n_comps=min(n_comps, min(tmp.shape) - 1), random_state=seed)
    return tmp.obsm["X_pca"]


class PeakMemory:
    """Peak increase of this process's resident memory inside a ``with`` block, in MiB.

    A thread samples ``/proc/self/statm`` every ``interval`` seconds; ``peak_mib`` is the largest
    resident size seen minus the size on entry. Works for memory allocated by numpy, torch and
    native code alike (unlike tracemalloc).
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_mib = 0.0

    @staticmethod
    def _rss_mib() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> PeakMemory:
        import threading

        self._start = self._rss_mib()
        self._peak = self._start
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss_mib())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss_mib())
        self.peak_mib = self._peak - self._start
