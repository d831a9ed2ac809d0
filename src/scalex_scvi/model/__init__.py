"""Models of scalex-scvi."""

from ._model import SCALEX

__all__ = ["SCALEX"]
