"""Torch modules of SCALEX."""

from ._components import BatchFreeEncoder, DSBNDecoder
from ._dsbn import DomainSpecificBatchNorm1d
from ._module import SCALEXVAE

__all__ = ["SCALEXVAE", "BatchFreeEncoder", "DSBNDecoder", "DomainSpecificBatchNorm1d"]
