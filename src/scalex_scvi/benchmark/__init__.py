"""Benchmark panel: several integration methods on the same data, scored the same way."""

from ._methods import METHODS, MethodUnavailable
from ._resources import Resources
from ._run import DEFAULT_METHODS, run_benchmark

__all__ = ["DEFAULT_METHODS", "METHODS", "MethodUnavailable", "Resources", "run_benchmark"]
