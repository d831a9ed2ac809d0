"""Preprocessing: the SCALEX recipe for reference and query data."""

from ._preprocess import prepare_query, preprocess
from ._steps import RECIPE_KEY

__all__ = ["RECIPE_KEY", "prepare_query", "preprocess"]
