"""SCALEX online single-cell data integration as a scvi-tools plugin."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, metrics, pp, tl
from .model import SCALEX
from .module import SCALEXVAE

try:
    __version__ = version("scalex-scvi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["SCALEX", "SCALEXVAE", "__version__", "datasets", "metrics", "pp", "tl"]
