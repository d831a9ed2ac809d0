"""Integration metrics: the SCALEX paper's, and scib-metrics' panel on embeddings."""

from ._clustering import leiden_ari_nmi, lisi_scores, silhouette_scores
from ._paper import batch_entropy_mixing_score, over_correction_floor, over_correction_score
from ._scib import AGGREGATE_COLUMNS, scib_benchmark

__all__ = [
    "AGGREGATE_COLUMNS",
    "batch_entropy_mixing_score",
    "leiden_ari_nmi",
    "lisi_scores",
    "over_correction_floor",
    "over_correction_score",
    "scib_benchmark",
    "silhouette_scores",
]
