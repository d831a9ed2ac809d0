"""Tools: label transfer and its evaluation."""

from ._label_transfer import UNKNOWN, transfer_labels

__all__ = ["UNKNOWN", "transfer_labels"]
