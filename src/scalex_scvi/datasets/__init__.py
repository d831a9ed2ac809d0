"""Datasets shipped with scalex-scvi."""

from ._pbmc import pbmc_3chemistries

__all__ = ["pbmc_3chemistries"]
