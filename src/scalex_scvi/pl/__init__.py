"""Plots."""

from ._plots import confusion_matrix, projection

__all__ = ["confusion_matrix", "projection"]
