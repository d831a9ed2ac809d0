"""Integration metrics."""

from ._scib import AGGREGATE_COLUMNS, scib_benchmark

__all__ = ["AGGREGATE_COLUMNS", "scib_benchmark"]
