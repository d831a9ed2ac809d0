"""MuData input: one modality as an AnnData, and a prepared modality put back into a MuData."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData


def is_mudata(data: object) -> bool:
    """Whether ``data`` is a :class:`~mudata.MuData` (without importing mudata for AnnData)."""
    if isinstance(data, AnnData):
        return False
    from mudata import MuData

    return isinstance(data, MuData)


def modality_with_obs(mdata: MuData, modality: str | None) -> AnnData:
    """One modality of ``mdata`` as an AnnData sharing its matrices, with the global annotations.

    Columns of ``mdata.obs`` that the modality lacks (e.g. a batch annotated on the MuData) are
    added to its ``obs``; the prefixed copies of the modalities' own columns (``"rna:batch"``)
    are not. ``mdata`` is not modified.

    Parameters
    ----------
    mdata
        The MuData.
    modality
        Name of the modality, a key of ``mdata.mod``.

    Returns
    -------
    An AnnData with the modality's cells, features, ``X``, layers and ``obsm``.
    """
    if modality is None:
        raise ValueError(
            f"The MuData holds modalities {list(mdata.mod)}; choose one with modality=."
        )
    if modality not in mdata.mod:
        raise KeyError(f"The MuData has no modality {modality!r}; it has {list(mdata.mod)}.")
    part = mdata.mod[modality]
    obs = part.obs.copy()
    for column in mdata.obs.columns:
        if column not in obs and ":" not in column:
            obs[column] = mdata.obs.loc[part.obs_names, column].to_numpy()
    return AnnData(
        X=part.X,
        obs=obs,
        var=part.var.copy(),
        layers=dict(part.layers),
        obsm=dict(part.obsm),
        uns=dict(part.uns),
    )


def replace_modality(mdata: MuData, modality: str, prepared: AnnData) -> MuData:
    """A new MuData: ``prepared`` as ``modality``, every other modality on its cells.

    The other modalities keep their values and annotations (copies, restricted to the cells of
    ``prepared``); the columns of ``mdata.obs`` that are not copies of a modality's own, and
    ``mdata.uns``, are carried over. ``mdata`` is not modified.
    """
    from mudata import MuData

    cells = prepared.obs_names
    parts = {  # each modality in the prepared one's cell order
        name: prepared if name == modality else part[cells[cells.isin(part.obs_names)]].copy()
        for name, part in mdata.mod.items()
    }
    result = MuData(parts)
    if not result.obs_names.equals(cells):  # the union of the modalities' cells, reordered
        result = result[cells].copy()
    for column in mdata.obs.columns:
        if ":" not in column and column not in result.obs:
            result.obs[column] = mdata.obs[column].reindex(result.obs_names).to_numpy()
    result.uns.update(dict(mdata.uns))
    return result
