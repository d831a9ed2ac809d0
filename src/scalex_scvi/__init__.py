"""SCALEX online single-cell data integration as a scvi-tools plugin."""

from importlib.metadata import PackageNotFoundError, version

from . import benchmark, datasets, io, metrics, pl, pp, tl
from ._atlas import Atlas
from ._integrate import integrate
from .model import SCALEX
from .module import SCALEXVAE

try:
    __version__ = version("scalex-scvi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "SCALEX",
    "SCALEXVAE",
    "Atlas",
    "__version__",
    "benchmark",
    "datasets",
    "integrate",
    "io",
    "metrics",
    "pl",
    "pp",
    "tl",
]
