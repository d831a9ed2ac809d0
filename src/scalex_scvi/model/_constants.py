"""Constants shared by the model's modules."""

NO_BATCH_CATEGORY = "_scalex_no_batch"  # batch of cells passed without a batch column
INFERENCE_BATCH_SIZE = 1024  # cells per forward pass at inference; results do not depend on it
# Batches with fewer (effective) cells keep the running statistics under batch_norm="per_batch":
# 1,024 hidden means and variances estimated from a handful of cells are mostly noise (one cell
# has no variance at all). The original package normalised mini-batches of 64 cells.
MIN_BATCH_NORM_CELLS = 32
