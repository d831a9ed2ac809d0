"""Tools: label transfer and its evaluation."""

from ._adaptation import (
    BALANCE_CELLS,
    BALANCE_REFERENCE_CELLS,
    adapted_statistics,
    balanced_latent,
    composition_weights,
)
from ._evaluation import confusion_matrix, label_transfer_scores, macro_f1_difference
from ._label_transfer import UNKNOWN, KNNLabelTransfer, transfer_labels

__all__ = [
    "BALANCE_CELLS",
    "BALANCE_REFERENCE_CELLS",
    "UNKNOWN",
    "KNNLabelTransfer",
    "adapted_statistics",
    "balanced_latent",
    "composition_weights",
    "confusion_matrix",
    "label_transfer_scores",
    "macro_f1_difference",
    "transfer_labels",
]
