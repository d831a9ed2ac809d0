"""Models of scalex-scvi."""

from ._model import SCALEX, default_kl_weight

__all__ = ["SCALEX", "default_kl_weight"]
