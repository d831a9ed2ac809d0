"""Readers of single-cell data files."""

from ._read import read, read_many, read_mtx_folder

__all__ = ["read", "read_many", "read_mtx_folder"]
