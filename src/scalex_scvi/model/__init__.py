"""Models of scalex-scvi."""

from ._batchnorm import HiddenStatistics
from ._model import SCALEX, default_kl_weight

__all__ = ["SCALEX", "HiddenStatistics", "default_kl_weight"]
