"""Query adaptation of the encoder's BatchNorm, matched to the reference type by type."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scalex_scvi.model import HiddenStatistics
from scalex_scvi.model._constants import MIN_BATCH_NORM_CELLS, NO_BATCH_CATEGORY

from ._label_transfer import UNKNOWN

# balanced_latent's sample, as Atlas.map(..., batch_norm="balanced") takes it: cells per query
# batch, and reference cells of the classifier that labels them (KNNLabelTransfer.subsample)
BALANCE_CELLS = 500
BALANCE_REFERENCE_CELLS = 20_000

if TYPE_CHECKING:
    from anndata import AnnData

    from scalex_scvi.model import SCALEX

    from ._label_transfer import KNNLabelTransfer


def composition_weights(
    labels: np.ndarray | pd.Series,
    reference_frequencies: pd.Series,
    groups: np.ndarray | pd.Series | None = None,
    unknown_label: str = UNKNOWN,
) -> np.ndarray:
    r"""Cell weights that give each group of query cells the reference's type composition.

    A query cell labelled :math:`k` in group :math:`b` weighs
    :math:`\pi_\mathrm{ref}(k) / \pi_b(k)`, where :math:`\pi_b` is the share of type :math:`k`
    among the labelled cells of its group (importance weights under a shift of cell-type
    proportions). Cells labelled ``unknown_label`` or with a type the reference lacks weigh 0.

    Parameters
    ----------
    labels
        Label of each query cell (e.g. predicted by :class:`~scalex_scvi.tl.KNNLabelTransfer`).
    reference_frequencies
        Share of each type among the reference cells (index: labels).
    groups
        Group (batch) of each query cell; ``None`` for one group.
    unknown_label
        Label of unassigned cells.

    Returns
    -------
    Array of non-negative weights, one per query cell. Within a group, each type's share of
    the total weight is its reference share (renormalised over the types the group has).
    """
    labels = pd.Series(np.asarray(labels, dtype=object)).astype(str)
    groups = pd.Series(
        np.zeros(len(labels), dtype=int) if groups is None else np.asarray(groups, dtype=object)
    )
    if len(groups) != len(labels):
        raise ValueError(f"Got {len(groups)} groups for {len(labels)} labels.")
    target = labels.map(reference_frequencies.astype(float)).fillna(0.0)
    target[labels == unknown_label] = 0.0
    counted = (target > 0).to_numpy()
    cells = pd.DataFrame({"group": groups, "label": labels})[counted]
    type_size = cells.groupby(["group", "label"])["label"].transform("size")
    group_size = cells.groupby("group")["label"].transform("size")
    weights = np.zeros(len(labels))
    weights[counted] = target[counted].to_numpy() * (group_size / type_size).to_numpy()
    return weights


def balanced_latent(
    model: SCALEX,
    adata: AnnData,
    classifier: KNNLabelTransfer,
    reference_statistics: HiddenStatistics,
    batch_size: int | None = None,
    max_cells: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed query cells with encoder BatchNorm statistics adapted to their batch, type by type.

    The frozen encoder normalises its hidden layer with statistics learnt on the reference.
    Statistics of a query batch (``batch_norm="per_batch"``) remove a technical shift of that
    batch, such as another chemistry's depth, but also every difference in cell-type composition,
    which pulls distinct populations together when the query holds other types, or other
    proportions, than the reference. Here only the shift is removed:

    1. embed with the running statistics and label the cells with ``classifier``;
    2. for each query batch, take the types it was given (cells called "Unknown" are left out)
       and weigh its cells so that these types come in the reference's proportions
       (:func:`composition_weights`);
    3. compare the weighted mean and variance of the batch's hidden layer with those of the
       reference cells of the same types in the same proportions (``reference_statistics``),
       and normalise the batch so that the two match before the running statistics apply:
       ``h -> (h - m_query) * s_ref / s_query + m_ref``, per hidden unit;
    4. embed again.

    When a batch has the reference's types in the reference's proportions this is
    ``batch_norm="per_batch"``; it leaves the model and the reference untouched. A cell's
    embedding depends on the other cells of its batch. Batches of fewer than 32 effective cells
    keep the running statistics.

    Steps 1 to 3 estimate 1,024 means and variances per batch, which a sample of the batch's
    cells does nearly as well as all of them: with ``max_cells``, they run on a random draw of
    at most that many cells of each batch, and only step 4 embeds every cell. Labelling is then
    the cost of a few thousand cells rather than of the whole query, the most costly step on
    large queries. Pass a ``classifier`` fitted on fewer reference cells
    (:meth:`~scalex_scvi.tl.KNNLabelTransfer.subsample`) to make it cheaper still.

    Parameters
    ----------
    model
        Trained SCALEX model.
    adata
        Query prepared with the model's recipe (:meth:`~scalex_scvi.SCALEX.prepare_query`).
        Batches are those of the model's batch column (one batch when it is missing).
    classifier
        :class:`~scalex_scvi.tl.KNNLabelTransfer` fitted on the reference's embedding.
    reference_statistics
        Hidden-layer statistics of the reference cells per label,
        ``model.get_hidden_statistics(reference, groups=labels)`` (what
        :meth:`scalex_scvi.Atlas.build` stores).
    batch_size
        Cells per forward pass.
    max_cells
        Steps 1 to 3 use at most this many cells of each batch (a random draw); ``None`` uses
        every cell.
    seed
        Seed of the draw.

    Returns
    -------
    ``(latent, weights)``: the embedding, shape ``(n_cells, n_latent)``, and the weight of each
    cell in its batch's statistics (0 for cells outside the draw).
    """
    batches = _query_batches(model, adata)
    drawn = _draw_per_batch(batches, max_cells, seed)
    sample = adata if drawn is None else adata[drawn].copy()
    running = model.get_latent_representation(sample, batch_size=batch_size)
    labels = classifier.predict(running)["label"].to_numpy(dtype=str)
    adapted, sample_weights = adapted_statistics(
        model, sample, labels, reference_statistics, classifier.unknown_label, batch_size
    )
    weights = sample_weights
    if drawn is not None:
        weights = np.zeros(adata.n_obs)
        weights[drawn] = sample_weights
    if adapted is None:
        if drawn is not None:
            running = model.get_latent_representation(adata, batch_size=batch_size)
        return running, weights
    latent = model.get_latent_representation(adata, batch_size=batch_size, batch_norm=adapted)
    return latent, weights


def _query_batches(model: SCALEX, adata: AnnData) -> np.ndarray:
    """Each cell's batch in the model's batch column; one batch where the column is missing."""
    batch_key = model.registry_["setup_args"]["batch_key"]
    if batch_key is not None and batch_key in adata.obs:
        return adata.obs[batch_key].astype(str).to_numpy()
    return np.full(adata.n_obs, NO_BATCH_CATEGORY)


def _draw_per_batch(batches: np.ndarray, max_cells: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of at most ``max_cells`` random cells per batch; ``None`` for all cells."""
    if max_cells is None:
        return None
    if max_cells < MIN_BATCH_NORM_CELLS:
        raise ValueError(
            f"max_cells (Atlas.map's balance_cells) must be at least {MIN_BATCH_NORM_CELLS}, "
            f"not {max_cells}: fewer cells keep the running statistics."
        )
    codes, names = pd.factorize(batches, sort=True)  # sorted: draws do not depend on order
    if np.bincount(codes).max() <= max_cells:
        return None
    rng = np.random.default_rng(seed)
    drawn = [
        rng.choice(cells, max_cells, replace=False) if len(cells) > max_cells else cells
        for cells in (np.flatnonzero(codes == code) for code in range(len(names)))
    ]
    return np.sort(np.concatenate(drawn))


def adapted_statistics(
    model: SCALEX,
    adata: AnnData,
    labels: np.ndarray,
    reference_statistics: HiddenStatistics,
    unknown_label: str = UNKNOWN,
    batch_size: int | None = None,
) -> tuple[HiddenStatistics | None, np.ndarray]:
    """Encoder BatchNorm statistics of each query batch, matched to the reference type by type.

    Steps 2 and 3 of :func:`balanced_latent`, for given labels of the query cells.

    Parameters
    ----------
    model
        Trained SCALEX model.
    adata
        Query prepared with the model's recipe.
    labels
        Label of each query cell (``unknown_label`` for unassigned cells).
    reference_statistics
        Hidden-layer statistics of the reference cells per label.
    unknown_label
        Label of unassigned cells.
    batch_size
        Cells per forward pass.

    Returns
    -------
    ``(statistics, weights)``: statistics per query batch for
    :meth:`~scalex_scvi.SCALEX.get_latent_representation` (``None`` when every batch is too
    small, so the running statistics apply), and the weight of each cell in its batch's
    statistics.
    """
    labels = np.asarray(labels, dtype=str)
    if labels.shape != (adata.n_obs,):
        raise ValueError(f"Got {len(labels)} labels for {adata.n_obs} query cells.")
    batches = _query_batches(model, adata)
    counts = pd.Series(reference_statistics.n_effective, index=reference_statistics.names)
    frequencies = counts / counts.sum()
    weights = composition_weights(labels, frequencies, batches, unknown_label)
    query = model.get_hidden_statistics(
        adata, groups=batches, cell_weights=weights, batch_size=batch_size
    )
    norm = model.module.z_encoder.norm
    eps = norm.eps
    running_mean = norm.running_mean.detach().cpu().double().numpy()
    running_var = norm.running_var.detach().cpu().double().numpy()
    names, means, variances, sizes = [], [], [], []
    for row, batch in enumerate(query.names):
        if query.n_effective[row] < MIN_BATCH_NORM_CELLS:
            continue  # too few cells: running statistics
        types = pd.unique(labels[(batches == batch) & (weights > 0)])
        share = frequencies[types].to_numpy() / frequencies[types].sum()
        index = reference_statistics.names.get_indexer(types)
        ref_mean = share @ reference_statistics.mean[index].astype(np.float64)
        ref_square = share @ (
            reference_statistics.var[index].astype(np.float64)
            + np.square(reference_statistics.mean[index].astype(np.float64))
        )
        ref_var = np.maximum(ref_square - np.square(ref_mean), 0.0)
        ratio = np.sqrt((query.var[row] + eps) / (ref_var + eps))
        names.append(batch)
        means.append(query.mean[row] - (ref_mean - running_mean) * ratio)
        variances.append((running_var + eps) * np.square(ratio) - eps)
        sizes.append(query.n_effective[row])
    if not names:
        return None, weights
    adapted = HiddenStatistics(
        names=pd.Index(names, dtype=object),
        mean=np.asarray(means, dtype=np.float32).reshape(len(names), -1),
        var=np.asarray(variances, dtype=np.float32).reshape(len(names), -1),
        n_effective=np.asarray(sizes, dtype=np.float32),
    )
    return adapted, weights
