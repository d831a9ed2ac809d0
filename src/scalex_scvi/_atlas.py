"""An expandable atlas: new data joins an existing cell space without retraining."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd

from scalex_scvi import pl
from scalex_scvi.model import SCALEX, HiddenStatistics
from scalex_scvi.tl import (
    BALANCE_CELLS,
    BALANCE_REFERENCE_CELLS,
    KNNLabelTransfer,
    balanced_latent,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from mudata import MuData

logger = logging.getLogger(__name__)

LATENT_KEY = "X_scalex"
MAP_KEY = "X_umap"
SOURCE_KEY = "source"
ORIGIN_KEY = "label_origin"
STATISTICS_FILE = "reference_statistics.npz"
_FORMAT_VERSION = 1


class Atlas:
    """A trained SCALEX model, its cells' embeddings and labels, and a fitted 2-D map.

    Build it once from a reference with :meth:`build`; then :meth:`map` new raw data onto it
    (prepared with the model's recipe, embedded by the frozen encoder, placed on the same 2-D map
    with UMAP's ``transform``, labelled by kNN) and :meth:`extend` it with the mapped cells. The
    embedding and map coordinates of cells already in the atlas never change.

    Use :meth:`build` or :meth:`load` rather than the constructor.

    Parameters
    ----------
    model
        Trained SCALEX model.
    blocks
        Cells of the atlas, as AnnData blocks holding ``obs`` and ``obsm`` only.
    umap
        Fitted :class:`umap.UMAP` of the reference embedding.
    label_key
        Column with the cell labels, or ``None``.
    classifier
        :class:`~scalex_scvi.tl.KNNLabelTransfer` fitted on the labelled reference cells.
    reference_statistics
        Encoder hidden-layer statistics of the reference cells per label, for
        ``map(..., batch_norm="balanced")``.
    """

    def __init__(
        self,
        model: SCALEX,
        blocks: list[ad.AnnData],
        umap,
        label_key: str | None,
        classifier: KNNLabelTransfer | None,
        reference_statistics: HiddenStatistics | None = None,
    ):
        self.model = model
        self._blocks = list(blocks)
        self._cache: ad.AnnData | None = None
        self._name_set: set[str] | None = None
        self.umap = umap
        self.label_key = label_key
        self.classifier = classifier
        self.reference_statistics = reference_statistics
        self._balancing: KNNLabelTransfer | None = None

    @classmethod
    def build(
        cls,
        model: SCALEX,
        adata: ad.AnnData | MuData | None = None,
        label_key: str | None = None,
        source: str = "reference",
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        random_state: int | None = 0,
        transfer_kwargs: dict | None = None,
        umap_kwargs: dict | None = None,
    ) -> Atlas:
        """Build an atlas from a trained model and its reference cells.

        Parameters
        ----------
        model
            Trained SCALEX model.
        adata
            Reference cells, prepared like the training data (for a model set up with a MuData,
            also a MuData: its modality of the model's name); ``None`` uses the model's data.
        label_key
            Column of ``adata.obs`` with cell labels to transfer; ``None`` for none. Cells
            whose label is missing stay in the atlas, unlabelled (also after save/load), and
            lend no label to new cells.
        source
            Name recorded in ``obs['source']`` for these cells.
        n_neighbors, min_dist
            UMAP parameters of the 2-D map. Placing new cells is the slowest step of
            :meth:`map`: below 4,096 reference cells umap-learn computes exact distances
            through a Python callable (``map`` at 300–420 cells/s on 2 CPU cores,
            ``benchmarks/results/atlas_growth.md``), from 4,096 on it searches its neighbour
            index (3,100–3,900 cells/s, ``benchmarks/results/backed_map.md``).
        random_state
            Seed of UMAP (fit and transform), for a reproducible map. ``None`` lets UMAP run
            in parallel, faster on large references but not reproducible.
        transfer_kwargs
            Keyword arguments of :class:`~scalex_scvi.tl.KNNLabelTransfer`; with
            ``{"calibration": "other_batches"}`` the Unknown cutoff is calibrated across the
            reference's batches (the model's batch column). Where the data to map may hold
            cell types the reference lacks, ``{"distance_quantile": 0.95}`` calls more of them
            "Unknown" (with the default 0.99 a type close to a reference type is mostly
            assigned to it; ``benchmarks/results/novel_types.md``), for more known cells
            called "Unknown"; ``{"per_label_cutoff": True}`` finds most of those (25 % of
            held-out cells against 30 %) at a smaller cost in known cells
            (``benchmarks/results/label_rules.md``). The cutoffs are saved with the atlas.
            ``{"metric": "cosine"}`` with ``map(..., batch_norm="balanced")`` is the setting
            recommended for label transfer: at least scArches' macro-F1 (both with cosine
            neighbours) on 5 of the 7 projection splits (``benchmarks/results/label_atlas.md``).
        umap_kwargs
            Further keyword arguments of :class:`umap.UMAP`, e.g.
            ``{"force_approximation_algorithm": True}`` to place new cells through a neighbour
            index on a reference below 4,096 cells, faster for large queries (numba compiles
            the index search on first use).

        Returns
        -------
        The atlas. The caller's objects are not modified.
        """
        import umap

        adata = model.adata if adata is None else adata
        if adata is None:
            raise ValueError("The model holds no AnnData; pass the reference cells as adata.")
        adata = model._features_adata(adata)  # a MuData's modality of the model, batch included
        if label_key is not None and label_key not in adata.obs:
            raise KeyError(f"{label_key!r} is not a column of adata.obs.")
        latent = model.get_latent_representation(adata)
        settings = {
            "n_neighbors": n_neighbors,
            "min_dist": min_dist,
            "random_state": random_state,
            "transform_seed": random_state if random_state is not None else 42,
            "n_jobs": 1 if random_state is not None else -1,
        }
        clashes = sorted(set(umap_kwargs or {}) & set(settings))
        if clashes:
            raise ValueError(f"Pass {clashes} as arguments of Atlas.build, not in umap_kwargs.")
        mapper = umap.UMAP(**settings, **(umap_kwargs or {})).fit(latent)
        obs = pd.DataFrame({SOURCE_KEY: source}, index=adata.obs_names.copy())
        batch_key = model.registry_["setup_args"]["batch_key"]
        if batch_key is not None and batch_key in adata.obs:
            obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
        classifier = statistics = None
        if label_key is not None:
            labels = adata.obs[label_key]
            obs[label_key] = labels.astype(str).where(labels.notna()).to_numpy()  # NaN kept
            obs[ORIGIN_KEY] = "reference"
            classifier = KNNLabelTransfer(**(transfer_kwargs or {}))
            batches = obs[batch_key] if batch_key is not None and batch_key in obs else None
            if classifier.calibration == "other_batches" and batches is None:
                raise ValueError(
                    'calibration="other_batches" needs the batch column of the model in adata.obs.'
                )
            classifier.fit(latent, adata.obs[label_key], batches=batches)
            labelled = adata.obs[label_key].notna().to_numpy()
            statistics = model.get_hidden_statistics(
                adata,
                groups=adata.obs[label_key].astype(str).to_numpy(),
                cell_weights=labelled.astype(float),
            )
        block = ad.AnnData(obs=obs, obsm={LATENT_KEY: latent, MAP_KEY: mapper.embedding_})
        return cls(model, [block], mapper, label_key, classifier, statistics)

    def map(
        self,
        adata: ad.AnnData | MuData,
        batch_key: str | None = None,
        prepared: bool = False,
        source: str = "query",
        batch_norm: Literal["running", "per_batch", "balanced"] = "running",
        keep_raw: bool = False,
        balance_cells: int | None = BALANCE_CELLS,
    ) -> ad.AnnData:
        """Map new data onto the atlas without retraining.

        Parameters
        ----------
        adata
            Raw counts of the new cells (any gene order, some genes may be missing), or data
            already prepared with the model's recipe when ``prepared`` is ``True``. Not modified.
            Raw counts may be backed (``anndata.read_h5ad(path, backed="r")``): they are read
            10,000 cells at a time and only the model's features kept
            (:func:`scalex_scvi.pp.prepare_query`). For a model set up with a MuData, also a
            MuData; its modality of the model's name is mapped.
        batch_key
            Column of ``adata.obs`` with the query's batches, if any.
        prepared
            ``adata`` is already prepared (``model.prepare_query``).
        source
            Name recorded in ``obs['source']``.
        batch_norm
            ``"running"`` (default): each cell's embedding depends on that cell only.
            ``"per_batch"``: the encoder's BatchNorm uses the statistics of each query batch
            (``batch_key``; the whole query when ``None``), as the original package did; this
            adapts the encoder to a query whose depth differs from the reference and scored a
            higher label-transfer macro-F1 on some splits of ``benchmarks/results/projection.md``,
            but a cell's embedding then depends on the other cells of its batch.
            ``"balanced"`` (atlases with labels): each query batch's statistics matched to
            those of the reference cells of the same types, in the same proportions, from
            labels transferred with the running statistics
            (:func:`scalex_scvi.tl.balanced_latent`). This keeps the adaptation to another
            depth or chemistry but not the pull of a different cell-type composition, which
            made ``"per_batch"`` lose on queries whose mix of types differs from the
            reference. Batches of fewer than 32 cells keep the running statistics under both.
            See ``balance_cells`` for its cost. With an atlas built with
            ``transfer_kwargs={"metric": "cosine"}`` it is the setting recommended for label
            transfer (``benchmarks/results/label_atlas.md``).
        keep_raw
            Also store the query's values of all its genes in ``.raw``, transformed as the
            reference's (:meth:`~scalex_scvi.SCALEX.prepare_query`), e.g. to plot marker genes
            of cells called "Unknown". With ``prepared``, the prepared data's own ``.raw`` is
            kept instead.
        balance_cells
            With ``batch_norm="balanced"``: the statistics of each query batch are estimated on
            a random draw (seeded) of at most this many of its cells, labelled by the atlas's
            classifier refitted on at most 20,000 reference cells
            (:meth:`~scalex_scvi.tl.KNNLabelTransfer.subsample`, built once per atlas); every
            cell is then embedded with them. ``None`` labels every query cell with the full
            classifier. For 84,276 protein cells in 6 batches onto 338,406
            (``benchmarks/results/balanced_speed.md``, one run) the draw took 0.49 s, every
            cell 10.4 s, running statistics 0.41 s; macro-F1 from the draw was 0.0012 below
            that from every cell (``label_atlas.md``, seeds 1-2). Queries whose batches are
            all smaller and atlases of at most 20,000 labelled cells give the same result
            either way.

        Returns
        -------
        The prepared query with the embedding in ``obsm['X_scalex']``, map coordinates in
        ``obsm['X_umap']`` and, when the atlas has labels, ``obs['<label_key>_predicted']``,
        ``obs['<label_key>_probability']`` and ``obs['<label_key>_uncertainty']``.
        """
        if batch_norm not in ("running", "per_batch", "balanced"):
            raise ValueError(
                f"batch_norm must be 'running', 'per_batch' or 'balanced', not {batch_norm!r}."
            )
        if batch_norm == "balanced" and (
            self.classifier is None or self.reference_statistics is None
        ):
            raise ValueError('batch_norm="balanced" needs an atlas built with a label_key.')
        query = (
            self.model._features_adata(adata).copy()
            if prepared
            else self.model.prepare_query(adata, batch_key=batch_key, keep_raw=keep_raw)
        )
        if batch_norm == "balanced":
            classifier = self.classifier
            if balance_cells is not None:
                if self._balancing is None:
                    self._balancing = self.classifier.subsample(BALANCE_REFERENCE_CELLS)
                classifier = self._balancing
            query.obsm[LATENT_KEY] = balanced_latent(
                self.model,
                query,
                classifier,
                self.reference_statistics,
                max_cells=balance_cells,
            )[0]
        else:
            query.obsm[LATENT_KEY] = self.model.get_latent_representation(
                query, batch_norm=batch_norm
            )
        query.obsm[MAP_KEY] = self.umap.transform(query.obsm[LATENT_KEY])
        query.obs[SOURCE_KEY] = source
        if self.classifier is not None:
            predicted = self.classifier.predict(query.obsm[LATENT_KEY], index=query.obs_names)
            query.obs[f"{self.label_key}_predicted"] = predicted["label"].to_numpy()
            query.obs[f"{self.label_key}_probability"] = predicted["probability"].to_numpy()
            query.obs[f"{self.label_key}_uncertainty"] = predicted["uncertainty"].to_numpy()
        return query

    def extend(self, mapped: ad.AnnData, index_unique: str | None = None) -> None:
        """Add mapped cells (the output of :meth:`map`) to the atlas.

        Cells already in the atlas keep their embedding and map coordinates bit for bit; the
        new cells are appended as a block, so time and memory grow with the cells added. Their
        label is the predicted one (``obs['label_origin'] == 'predicted'``).

        Parameters
        ----------
        mapped
            The output of :meth:`map`. Not modified.
        index_unique
            Name the added cells ``f"{name}{index_unique}{source}"``, as
            :func:`anndata.concat` does, e.g. ``"-"``. Needed when their names are already in
            the atlas (10x barcodes repeat across samples); ``None`` keeps the names and raises
            if any is taken, so that cells are not added twice by mistake.
        """
        for key in (LATENT_KEY, MAP_KEY):
            if key not in mapped.obsm:
                raise KeyError(f"mapped.obsm has no {key!r}; pass the output of Atlas.map().")
        source = mapped.obs.get(SOURCE_KEY, pd.Series("query", index=mapped.obs_names))
        names = pd.Index(mapped.obs_names.astype(str))
        if index_unique is not None:
            names = names + index_unique + pd.Index(source.astype(str).to_numpy())
        self._check_new_names(names)
        obs = pd.DataFrame({SOURCE_KEY: source.to_numpy()}, index=names)
        batch_key = self.model.registry_["setup_args"]["batch_key"]
        if batch_key is not None and batch_key in mapped.obs:
            obs[batch_key] = mapped.obs[batch_key].astype(str).to_numpy()
        if self.label_key is not None:
            predicted = f"{self.label_key}_predicted"
            if predicted not in mapped.obs:
                raise KeyError(f"mapped.obs has no {predicted!r}; pass the output of Atlas.map().")
            obs[self.label_key] = mapped.obs[predicted].astype(str).to_numpy()
            obs[ORIGIN_KEY] = "predicted"
        block = ad.AnnData(
            obs=obs,
            obsm={
                LATENT_KEY: np.array(mapped.obsm[LATENT_KEY], copy=True),
                MAP_KEY: np.array(mapped.obsm[MAP_KEY], copy=True),
            },
        )
        self._blocks.append(block)
        self._names().update(names)
        self._cache = None

    def _check_new_names(self, names: pd.Index) -> None:
        """Raise when cells to add repeat each other's or the atlas's names."""
        if not names.is_unique:
            repeated = names[names.duplicated()].unique()
            raise ValueError(
                f"The mapped cells' names are not unique (e.g. {list(repeated[:3])}); make "
                "them unique first (mapped.obs_names_make_unique())."
            )
        known = self._names()
        taken = names[[name in known for name in names]]
        if len(taken):
            raise ValueError(
                f"{len(taken)} of the {len(names)} mapped cells are named like cells already "
                f"in the atlas (e.g. {list(taken[:3])}): added before, or names that repeat "
                "across samples (10x barcodes). Pass index_unique='-' to name the new cells "
                "'<name>-<source>', or rename them."
            )

    def _names(self) -> set[str]:
        """Names of the atlas's cells, collected once and then kept up to date by :meth:`extend`.

        A set, so that checking and adding new cells costs time in the cells added, not in the
        size of the atlas.
        """
        if self._name_set is None:
            self._name_set = {str(name) for block in self._blocks for name in block.obs_names}
        return self._name_set

    @property
    def adata(self) -> ad.AnnData:
        """The atlas's cells as one AnnData, built on demand; treat it as read-only.

        ``obs`` holds the source, batch, label and label origin of each cell, ``obsm`` the
        ``X_scalex`` embedding and the ``X_umap`` map coordinates.
        """
        if self._cache is None:
            self._cache = (
                self._blocks[0].copy()
                if len(self._blocks) == 1
                else ad.concat(self._blocks, join="outer", merge="first")
            )
        return self._cache

    @property
    def n_obs(self) -> int:
        """Number of cells in the atlas."""
        return sum(block.n_obs for block in self._blocks)

    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Write everything needed to map new data later, on another machine, to one folder.

        ``model/`` (scvi-tools save, with the preprocessing recipe), ``cells.h5ad`` (the atlas's
        cells), ``umap.joblib`` (the fitted map; a pickle, so load atlases you trust only),
        ``reference_statistics.npz`` (with labels: the encoder's hidden-layer statistics per
        reference label, for ``map(..., batch_norm="balanced")``) and ``atlas.json``
        (settings).
        """
        import joblib

        dir_path = Path(dir_path)
        if dir_path.exists() and any(dir_path.iterdir()) and not overwrite:
            raise FileExistsError(f"{dir_path} exists and is not empty; pass overwrite=True.")
        dir_path.mkdir(parents=True, exist_ok=True)
        self.model.save(dir_path / "model", overwrite=True, save_anndata=False)
        self.adata.write_h5ad(dir_path / "cells.h5ad")
        joblib.dump(self.umap, dir_path / "umap.joblib")
        if self.reference_statistics is not None:
            stats = self.reference_statistics
            np.savez(
                dir_path / STATISTICS_FILE,
                names=np.asarray(stats.names, dtype=str),
                mean=stats.mean,
                var=stats.var,
                n_effective=stats.n_effective,
            )
        settings = {
            "format_version": _FORMAT_VERSION,
            "label_key": self.label_key,
            "classifier": None
            if self.classifier is None
            else {
                **self.classifier.get_params(),  # scikit-learn's, from the constructor
                "distance_cutoff": self.classifier.distance_cutoff_,
                "label_cutoffs": self.classifier.label_cutoffs_.to_dict(),
            },
        }
        (dir_path / "atlas.json").write_text(json.dumps(settings, indent=2))

    @classmethod
    def load(
        cls, dir_path: str | Path, accelerator: str = "auto", device: int | str = "auto"
    ) -> Atlas:
        """Load an atlas written by :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        accelerator, device
            Where the model runs, as in :meth:`scvi.model.base.BaseModelClass.load`
            (``"auto"``: a GPU where there is one). An atlas saved on a GPU machine loads on a
            CPU-only one.

        Returns
        -------
        The atlas, mapping new data as the saved one did.
        """
        import joblib

        dir_path = Path(dir_path)
        if not (dir_path / "atlas.json").is_file():
            raise FileNotFoundError(
                f"No atlas in {dir_path}: it has no atlas.json (write one with Atlas.save)."
            )
        settings = json.loads((dir_path / "atlas.json").read_text())
        model = SCALEX.load(dir_path / "model", accelerator=accelerator, device=device)
        cells = ad.read_h5ad(dir_path / "cells.h5ad")
        mapper = joblib.load(dir_path / "umap.joblib")
        statistics = None
        if (dir_path / STATISTICS_FILE).exists():
            with np.load(dir_path / STATISTICS_FILE) as stored:
                statistics = HiddenStatistics(
                    names=pd.Index(stored["names"].astype(str), dtype=object),
                    mean=stored["mean"],
                    var=stored["var"],
                    n_effective=stored["n_effective"],
                )
        label_key = settings["label_key"]
        classifier = None
        if settings["classifier"] is not None:
            params = dict(settings["classifier"])
            cutoff = params.pop("distance_cutoff")
            label_cutoffs = params.pop("label_cutoffs", None)  # older atlas.json files lack it
            reference = (cells.obs[ORIGIN_KEY] == "reference").to_numpy()
            labels = cells.obs[label_key].astype(object)
            # atlases written before missing labels were kept missing stored them as "nan"
            labels = labels.where(labels.notna() & (labels != "nan"))
            classifier = KNNLabelTransfer(**params).fit(
                cells.obsm[LATENT_KEY][reference],
                labels.to_numpy()[reference],
                distance_cutoff=cutoff,
                label_cutoffs=label_cutoffs,
            )
        return cls(model, [cells], mapper, label_key, classifier, statistics)

    def plot_projection(
        self, mapped: ad.AnnData, color: str | None = None, ax: Axes | None = None, **kwargs
    ) -> Axes:
        """The paper's projection figure: atlas cells in grey, mapped cells coloured.

        Parameters
        ----------
        mapped
            Output of :meth:`map`.
        color
            Column of ``mapped.obs`` to colour by; the predicted label by default.
        ax
            Axes to draw on.
        **kwargs
            Passed to :func:`scalex_scvi.pl.projection`.
        """
        if color is None:
            if self.label_key is None:
                raise ValueError("The atlas has no labels; pass color=.")
            color = f"{self.label_key}_predicted"
        return pl.projection(
            self.adata.obsm[MAP_KEY], mapped.obsm[MAP_KEY], mapped.obs[color], ax=ax, **kwargs
        )

    def __repr__(self) -> str:
        sources = self.adata.obs[SOURCE_KEY].value_counts().to_dict()
        return (
            f"Atlas with {self.n_obs} cells from {sources}; labels: {self.label_key}; "
            f"{self.model.summary_stats.n_vars} features."
        )
