"""SCALEX: online single-cell data integration on scvi-tools."""

from __future__ import annotations

import copy
import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401  scvi-tools 1.4.2's view_anndata_setup calls it unimported
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalObsField,
    LayerField,
    MuDataCategoricalObsField,
    MuDataLayerField,
)
from scvi.model._utils import parse_device_args  # as scvi-tools' own load resolves a device
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.model.base._save_load import _load_saved_files  # the saved features, before loading
from scvi.module._constants import MODULE_KEYS
from scvi.utils import setup_anndata_dsp

from scalex_scvi._mudata import is_mudata, modality_with_obs
from scalex_scvi.module import SCALEXVAE
from scalex_scvi.pp._preprocess import RECIPE_KEY, prepare_query
from scalex_scvi.pp._steps import check_batch_labels

from ._batchnorm import HiddenStatistics, grouped_hidden_statistics
from ._constants import INFERENCE_BATCH_SIZE, MIN_BATCH_NORM_CELLS, NO_BATCH_CATEGORY
from ._optim import adam_creator
from ._original import (
    module_state_from_original,
    original_architecture,
    original_batch_names,
    original_recipe,
    read_original_checkpoint,
    registry_of,
)
from ._query import extended_state, set_new_domain_statistics
from ._training_plan import SCALEXTrainingPlan
from ._vae_methods import VAEMethodsMixin

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Literal

    from mudata import MuData

logger = logging.getLogger(__name__)

_RANGE_TOLERANCE = 1e-4
PAPER_KL_WEIGHT = 0.5
DEFAULT_WEIGHT_DECAY = 5e-4  # the paper's
FULL_KL_FEATURES = 1000  # below this many features the default KL weight shrinks linearly
_COLLAPSE_STD = 0.01  # latent standard deviation under which every dimension counts as collapsed
_COLLAPSE_SAMPLE = 5000


class SCALEX(VAEMethodsMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """SCALEX: online integration through a batch-free encoder :cite:p:`Xiong22`.

    A VAE whose encoder never sees the batch and whose decoder normalises each batch with its own
    BatchNorm. Cells of batches the model has never seen are embedded by the frozen encoder into
    the same space, without retraining.

    Parameters
    ----------
    adata
        AnnData object registered with :meth:`~scalex_scvi.SCALEX.setup_anndata` (or MuData
        registered with :meth:`~scalex_scvi.SCALEX.setup_mudata`), holding values in ``[0, 1]``
        (see :func:`scalex_scvi.pp.preprocess`).
    registry
        Registry of a saved model, used by :meth:`load` when no AnnData is given.
    n_hidden
        Width of the encoder's hidden layer.
    n_latent
        Dimensionality of the latent space (the paper's 10). A 30-dimensional latent did not
        improve label transfer on the projection splits (macro-F1 level with 10 dimensions
        over 18 split-seed pairs, lower on interferon-stimulated PBMC, and on the lung split
        whose query holds two lines the reference lacks almost none of their cells called
        "Unknown"; ``benchmarks/results/projection_seeds.md``).
    kl_weight
        Weight of the KL divergence in the loss. ``None`` (default) uses
        :func:`default_kl_weight`: the paper's 0.5 for inputs of at least 1,000 features (every
        RNA and ATAC setting of the paper), scaled down in proportion for fewer features (a
        protein panel), where the reconstruction term, a sum over features, is otherwise too
        small next to the KL and the posterior collapses. A lighter weight (e.g. 0.02 with
        ``max_iterations=8000``) over-corrects less when batches share few cell types, and
        mixes batches less where they hold the same ones (``benchmarks/results/
        partial_overlap.md`` and ``panel.md``).
    encoder_norm
        Normalisation of the encoder's hidden layer: ``"batch"`` (default, the paper's
        BatchNorm) or ``"layer"`` (a LayerNorm over each cell's own hidden units; not in the
        paper). With ``"layer"`` no statistics of other cells enter an embedding, in training
        or at inference, so ``batch_norm`` of :meth:`get_latent_representation` and
        :func:`scalex_scvi.tl.balanced_latent` do not apply. Not recommended: on the small
        projection splits (18 split-seed pairs) its label transfer was 0.055 macro-F1 below the
        BatchNorm's with running statistics (not distinguishable) and 0.086 below with
        balanced statistics (distinguishable), and early stopping ended its training after
        fewer than 2,000 iterations (seed means) on two of the six splits
        (``benchmarks/results/projection_encoder_norm.md``).

    Every method that takes ``adata`` also takes a MuData when the model was set up with
    :meth:`setup_mudata`: it reads the modality the model was set up with.

    Examples
    --------
    >>> adata = scalex_scvi.datasets.pbmc_3chemistries()
    >>> adata = scalex_scvi.pp.preprocess(adata, batch_key="batch", min_features=50)
    >>> scalex_scvi.SCALEX.setup_anndata(adata, batch_key="batch")
    >>> model = scalex_scvi.SCALEX(adata)
    >>> model.train()
    >>> adata.obsm["X_scalex"] = model.get_latent_representation()
    >>> query = model.prepare_query(raw_query, batch_key="batch")
    >>> query.obsm["X_scalex"] = model.get_latent_representation(query)
    """

    _module_cls = SCALEXVAE
    _training_plan_cls = SCALEXTrainingPlan

    def __init__(
        self,
        adata: AnnData | MuData | None = None,
        registry: dict | None = None,
        n_hidden: int = 1024,
        n_latent: int = 10,
        kl_weight: float | None = None,
        encoder_norm: Literal["batch", "layer"] = "batch",
    ):
        super().__init__(adata, registry)
        features = self._features_adata(adata) if adata is not None else None  # once per MuData
        if features is not None:
            _check_unit_range(self._registered_matrix(features), "the training data")
        if kl_weight is None:
            kl_weight = default_kl_weight(self.summary_stats.n_vars)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            n_hidden=n_hidden,
            n_latent=n_latent,
            kl_weight=kl_weight,
            encoder_norm=encoder_norm,
        )
        recipe = features.uns.get(RECIPE_KEY) if features is not None else None
        self.preprocess_recipe_ = dict(recipe) if recipe is not None else None
        self._model_summary_string = (
            f"SCALEX model with n_hidden: {n_hidden}, n_latent: {n_latent}, "
            f"kl_weight: {kl_weight}, encoder_norm: {encoder_norm}, "
            f"n_batch: {self.summary_stats.n_batch}."
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        batch_key: str | None = None,
        layer: str | None = None,
        **kwargs,
    ):
        """%(summary)s.

        The registered matrix must hold values in ``[0, 1]``, as produced by
        :func:`scalex_scvi.pp.preprocess`.

        Parameters
        ----------
        %(param_adata)s
        %(param_batch_key)s
        %(param_layer)s
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if "source_registry" not in kwargs:  # a query's placeholder batch is always filled
            check_batch_labels(adata.obs, batch_key)
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_mudata(
        cls,
        mdata: MuData,
        layer: str | None = None,
        batch_key: str | None = None,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ):
        """%(summary_mdata)s.

        SCALEX reads one modality, the one prepared by :func:`scalex_scvi.pp.preprocess`
        (e.g. ``pp.preprocess(mdata, modality="rna")``); the others travel with the MuData
        untouched. The modality must hold every cell of ``mdata``, in the same order.

        Parameters
        ----------
        %(param_mdata)s
        layer
            Layer of the modality with the values in ``[0, 1]``; ``None`` uses its ``X``.
        batch_key
            Column with the batches, in ``mdata.obs`` or in the ``obs`` of the modality named
            by ``modalities["batch_key"]``; ``None`` for one batch.
        modalities
            Modality of each argument: ``{"layer": "rna"}`` reads the values from
            ``mdata["rna"]`` and the batch from ``mdata.obs``; ``{"layer": "rna",
            "batch_key": "rna"}`` reads the batch from ``mdata["rna"].obs``.

        Examples
        --------
        >>> mdata = scalex_scvi.pp.preprocess(mdata, batch_key="batch", modality="rna")
        >>> scalex_scvi.SCALEX.setup_mudata(mdata, batch_key="batch", modalities={"layer": "rna"})
        >>> model = scalex_scvi.SCALEX(mdata)
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if modalities is None or "layer" not in modalities:
            raise ValueError(
                'modalities must name the modality with the features, e.g. {"layer": "rna"}.'
            )
        unknown = sorted(set(modalities) - {"layer", "batch_key"})
        if unknown:
            raise ValueError(f"modalities takes 'layer' and 'batch_key', not {unknown}.")
        modalities = cls._create_modalities_attr_dict(modalities, setup_method_args)
        part = mdata.mod.get(modalities.layer)
        if part is None:
            raise KeyError(f"No modality {modalities.layer!r}; mdata has {list(mdata.mod)}.")
        if not part.obs_names.equals(mdata.obs_names):
            raise ValueError(
                f"The modality {modalities.layer!r} holds {part.n_obs} of the MuData's "
                f"{mdata.n_obs} cells (or another order); SCALEX needs the same cells. Keep the "
                f"cells it has: mdata[mdata[{modalities.layer!r}].obs_names].copy() "
                "(scalex_scvi.pp.preprocess(mdata, modality=...) returns such a MuData)."
            )
        batch_obs = mdata.obs if modalities.batch_key is None else mdata[modalities.batch_key].obs
        check_batch_labels(batch_obs, batch_key)
        mudata_fields = [
            MuDataLayerField(
                REGISTRY_KEYS.X_KEY,
                layer,
                mod_key=modalities.layer,
                is_count_data=False,
                mod_required=True,
            ),
            MuDataCategoricalObsField(
                REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=modalities.batch_key
            ),
        ]
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    def train(
        self,
        max_epochs: int | None = None,
        max_iterations: int = 30_000,
        batch_size: int = 64,
        lr: float = 2e-4,
        weight_decay: float | None = None,
        early_stopping: bool = True,
        early_stopping_patience: int = 10,
        train_size: float = 1.0,
        validation_size: float | None = None,
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Train the model with the paper's defaults.

        Mini-batches of ``batch_size`` cells drawn across all batches, Adam with ``lr`` and
        ``weight_decay`` (eps 1e-8, PyTorch's fused implementation, no KL warm-up), at most
        ``max_iterations`` steps, and early stopping once the monitored loss has not improved
        for ``early_stopping_patience`` epochs. With ``train_size=1.0`` (the paper's setting)
        the monitored loss is the epoch mean of the training loss; with a validation split it
        is the validation ELBO.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs. By default ``max_iterations`` turned into epochs from the
            number of training cells (rounded up, as the original does).
        max_iterations
            Maximum number of mini-batch steps.
        batch_size
            Mini-batch size.
        lr
            Learning rate of Adam. ``lr=1e-3`` with ``max_iterations=4000`` and no early stopping
            scored level with the defaults on the benchmark panel's datasets (mean scib Total
            over five seeds within 0.005, or above, no difference distinguishable over the
            seeds) in a sixth to a bit over a quarter of the time
            (``benchmarks/results/panel.md``). At 2e-4 the reconstruction stays far from the
            data's level for thousands of steps, as the decoder BatchNorm's shifts start at 0
            and move at most about ``lr`` per step; starting them at the data's level did not
            bring the embedding's quality sooner (``benchmarks/results/decoder_bias_init.md``).
        weight_decay
            Weight decay of Adam; ``None`` uses the paper's 5e-4, or 0 for a query model
            (:meth:`load_query_data`), which trains only the new batches' decoder
            normalisation: Adam's weight decay would also shrink the reference's fixed
            parameters, so a query model refuses any other value.
        early_stopping
            Whether to stop once the monitored loss stops improving.
        early_stopping_patience
            Epochs without improvement before stopping.
        train_size
            Fraction of cells used for training; the rest (or ``validation_size``) validates.
        validation_size
            Fraction of cells used for validation.
        plan_kwargs
            Keyword arguments for :class:`~scvi.train.TrainingPlan`; they override the
            defaults set here. As in the paper, there is no KL warm-up; scvi's
            (``{"n_steps_kl_warmup": n}``) ended at the same embedding quality and
            over-correction (``benchmarks/results/kl_warmup.md``).
        **kwargs
            Other keyword arguments for :meth:`scvi.model.base.UnsupervisedTrainingMixin.train`
            and :class:`~scvi.train.Trainer` (``accelerator``, ``devices``,
            ``check_val_every_n_epoch``, ``enable_progress_bar``, ...).
        """
        n_train = math.ceil(self.summary_stats.n_cells * train_size)
        steps_per_epoch = max(math.ceil(n_train / batch_size), 1)
        if max_epochs is None:
            max_epochs = max(math.ceil(max_iterations / steps_per_epoch), 1)
        has_validation = train_size < 1.0 or bool(validation_size)
        plan_kwargs = dict(plan_kwargs or {})
        optimizer_args = {
            "lr": plan_kwargs.pop("lr", lr),
            "weight_decay": self._weight_decay(plan_kwargs.pop("weight_decay", weight_decay)),
            "eps": plan_kwargs.pop("eps", 1e-8),
        }
        plan_kwargs = {
            "optimizer": "Custom",
            "optimizer_creator": adam_creator(**optimizer_args),
            "n_epochs_kl_warmup": None,
            "n_steps_kl_warmup": None,
            "max_kl_weight": 1.0,
            **plan_kwargs,
        }
        kwargs.setdefault(
            "early_stopping_monitor", "elbo_validation" if has_validation else "train_loss"
        )
        if not has_validation:
            kwargs.setdefault("limit_val_batches", 0)
        query_model = bool(self.module.n_frozen_batches)
        if query_model and self.history_ is None:
            self.is_trained_ = False  # a query model's first training starts its own history
        # Lightning (>= 2.2) keeps the modules' mode at the start of fitting; after any
        # inference (eval mode) further training would otherwise run with frozen BatchNorms.
        self.module.train()
        with warnings.catch_warnings():
            if query_model:  # its encoder stays in eval mode on purpose
                warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
            try:
                super().train(
                    max_epochs=max_epochs,
                    max_steps=max_iterations,
                    batch_size=batch_size,
                    train_size=train_size,
                    validation_size=validation_size,
                    early_stopping=early_stopping,
                    early_stopping_patience=early_stopping_patience,
                    plan_kwargs=plan_kwargs,
                    **kwargs,
                )
            finally:
                self.is_trained_ = self.is_trained_ or query_model  # usable if interrupted
        self._warn_if_collapsed()

    def _weight_decay(self, weight_decay: float | None) -> float:
        """The weight decay to train with; checks that a query model has batches to fit."""
        n_frozen = self.module.n_frozen_batches
        if not n_frozen:
            return DEFAULT_WEIGHT_DECAY if weight_decay is None else weight_decay
        if n_frozen == self.module.n_batch:
            raise ValueError(
                "Every batch of this query model is a reference batch, so there is nothing to "
                "train: their decoder normalisation is the reference's."
            )
        if weight_decay:
            raise ValueError(
                "A query model trains only its new batches' decoder normalisation; weight decay "
                "would also shrink the reference's fixed parameters. Leave weight_decay=None."
            )
        return 0.0

    def _warn_if_collapsed(self) -> None:
        """Warn when the latent means of the training cells do not vary (posterior collapse)."""
        n_cells = self.summary_stats.n_cells
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n_cells, min(n_cells, _COLLAPSE_SAMPLE), replace=False))
        if len(sample) < 2:
            return
        spread = self.get_latent_representation(indices=sample).std(axis=0).max()
        if spread < _COLLAPSE_STD:
            warnings.warn(
                f"The latent space collapsed: the latent means of the training cells vary by at "
                f"most {spread:.1e} (standard deviation), so the embedding carries no "
                f"information. Lower kl_weight (now {self.module.kl_weight}) or train for fewer "
                "iterations.",
                UserWarning,
                stacklevel=3,  # the caller of train()
            )

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        return_dist: bool = False,
        batch_norm: Literal["running", "per_batch"] | HiddenStatistics = "running",
        dataloader: Iterator[dict[str, torch.Tensor]] | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        r"""Embed cells with the frozen encoder.

        Works for the training data and for any AnnData holding the model's features (in any
        order), including batches the model has never seen and data without a batch column.
        Nothing is trained and no parameter or buffer changes.

        Parameters
        ----------
        adata
            AnnData with the model's features, prepared like the training data (see
            :meth:`prepare_query`); for a model set up with a MuData also a MuData, whose
            modality of the model's name is read. ``None`` uses the training data.
        indices
            Indices of the cells to embed. ``None`` embeds all.
        give_mean
            Return the mean of :math:`q(z \mid x)` (SCALEX's latent) rather than a sample.
        batch_size
            Cells per forward pass (default 1,024); does not change the result.
        return_dist
            Return the mean and the variance of :math:`q(z \mid x)`.
        batch_norm
            Statistics of the encoder's BatchNorm:

            * ``"running"``: the running statistics learnt in training. A cell's embedding
              depends on that cell only.
              The only choice for a model with ``encoder_norm="layer"``.
            * ``"per_batch"``: statistics computed over all the cells passed of the same batch
              (the batch column registered with the model; one group when it is missing). This
              is a deterministic form of the original package's behaviour, which kept BatchNorm
              in training mode at inference and so normalised each random mini-batch of a
              batch with its own statistics. A cell's embedding then depends on its batch,
              and batches that hold different cell types are pulled together (more
              over-correction on the partial-overlap series, ``partial_overlap_per_batch.md``).
              Batches of fewer than 32 cells keep the running statistics.
            * :class:`~scalex_scvi.model.HiddenStatistics` named by batch: these statistics
              for the cells of those batches, the running ones for the others (as computed
              by :func:`scalex_scvi.tl.balanced_latent`).
        dataloader
            Mini-batches of a data loader of this model to embed instead of ``adata`` (as in
            scvi-tools, whose :meth:`get_aggregated_posterior` passes one); running statistics
            only.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)``, or the tuple ``(mean, variance)`` when
        ``return_dist`` is ``True``.
        """
        self._check_if_trained(warn=False)
        explicit = isinstance(batch_norm, HiddenStatistics)
        if not explicit and batch_norm not in ("running", "per_batch"):
            raise ValueError(
                "batch_norm must be 'running', 'per_batch' or a HiddenStatistics, "
                f"not {batch_norm!r}."
            )
        if (explicit or batch_norm != "running") and self.module.encoder_norm != "batch":
            raise ValueError(
                f"batch_norm={batch_norm!r} needs a BatchNorm encoder; this model's encoder uses "
                f"{self.module.encoder_norm!r} normalisation and takes 'running' only."
            )
        self.module.eval()
        if dataloader is not None:
            if explicit or batch_norm != "running":
                raise ValueError("With a dataloader, batch_norm must be 'running'.")
            return self._embed(dataloader, None, give_mean, return_dist)
        with self._registered(adata) as registered:
            by_code = None  # (mean, var) per batch code of the registry
            if explicit:
                by_code = self._statistics_by_code(registered, batch_norm)
            elif batch_norm == "per_batch":
                stats = self._hidden_statistics(registered, indices, batch_size)
                big = stats.n_effective >= MIN_BATCH_NORM_CELLS
                by_code = self._statistics_by_code(
                    registered,
                    HiddenStatistics(
                        stats.names[big], stats.mean[big], stats.var[big], stats.n_effective[big]
                    ),
                )
            loader = self._data_loader(registered, indices, batch_size)
            return self._embed(loader, by_code, give_mean, return_dist)

    def _embed(
        self,
        loader: Iterator[dict[str, torch.Tensor]],
        by_code: tuple[torch.Tensor, torch.Tensor] | None,
        give_mean: bool,
        return_dist: bool,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Encode the loader's mini-batches (hidden statistics per batch code, if given)."""
        means, variances = [], []
        for tensors in loader:
            stats = None
            if by_code is not None:
                stats = (*by_code, tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long())
            outputs = self.module.inference(tensors[REGISTRY_KEYS.X_KEY], hidden_stats=stats)
            if return_dist or give_mean:
                means.append(outputs[MODULE_KEYS.QZM_KEY].cpu())
                variances.append(outputs[MODULE_KEYS.QZV_KEY].cpu())
            else:
                means.append(outputs[MODULE_KEYS.Z_KEY].cpu())
        if return_dist:
            return torch.cat(means).numpy(), torch.cat(variances).numpy()
        return torch.cat(means).numpy()

    @torch.inference_mode()
    def get_hidden_statistics(
        self,
        adata: AnnData | MuData | None = None,
        groups: Sequence | np.ndarray | pd.Series | None = None,
        cell_weights: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> HiddenStatistics:
        """Statistics of the encoder's hidden layer, before its BatchNorm, per group of cells.

        Parameters
        ----------
        adata
            AnnData with the model's features, prepared like the training data. ``None`` uses
            the training data.
        groups
            Group of each cell (e.g. cell types). ``None`` groups by the batch column registered
            with the model (one group when it is missing).
        cell_weights
            Non-negative weight of each cell; ``None`` weighs cells equally.
        batch_size
            Cells per forward pass; does not change the result.

        Returns
        -------
        Weighted mean and biased variance of the hidden pre-activations, and the effective
        number of cells, of every group with a positive weight.
        """
        self._check_if_trained(warn=False)
        self.module.eval()
        with self._registered(adata) as registered:
            return self._hidden_statistics(registered, None, batch_size, groups, cell_weights)

    def _hidden_statistics(
        self,
        registered: AnnData,
        indices: Sequence[int] | None,
        batch_size: int | None,
        groups: Sequence | np.ndarray | pd.Series | None = None,
        cell_weights: np.ndarray | None = None,
    ) -> HiddenStatistics:
        n_cells = registered.n_obs if indices is None else len(indices)
        codes = None
        if groups is None:
            names = pd.Index(self._batch_mapping(registered))
        else:
            groups = np.asarray(groups, dtype=object)
            if groups.shape != (n_cells,) or pd.isna(groups).any():
                raise ValueError(f"groups must hold one label per cell ({n_cells}), none missing.")
            factorized, names = pd.factorize(groups)
            codes = torch.as_tensor(factorized)
        weights = None
        if cell_weights is not None:
            weights = torch.as_tensor(np.asarray(cell_weights, dtype=np.float64))
            if weights.shape != (n_cells,) or not torch.isfinite(weights).all():
                raise ValueError(f"cell_weights must hold one finite value per cell ({n_cells}).")
            if (weights < 0).any():
                raise ValueError("cell_weights must be non-negative.")
        mean, var, n_effective = grouped_hidden_statistics(
            self.module, self._data_loader(registered, indices, batch_size), codes, weights
        )
        present = np.zeros(len(names), dtype=bool)
        present[: len(n_effective)] = (n_effective > 0).cpu().numpy()
        rows = np.flatnonzero(present)
        return HiddenStatistics(
            names=pd.Index(names[rows]),
            mean=mean[rows].float().cpu().numpy(),
            var=var[rows].float().cpu().numpy(),
            n_effective=n_effective[rows].float().cpu().numpy(),
        )

    def _statistics_by_code(
        self, registered: AnnData, stats: HiddenStatistics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per registry batch code: the statistics of that batch name, else the running ones."""
        norm = self.module.z_encoder.norm
        mapping = self._batch_mapping(registered)
        mean = norm.running_mean.detach().repeat(len(mapping), 1)
        var = norm.running_var.detach().repeat(len(mapping), 1)
        rows = pd.Index(stats.names).get_indexer(mapping)
        found = np.flatnonzero(rows >= 0)
        if stats.mean.shape[1:] != (mean.shape[1],):
            raise ValueError(f"Statistics of width {stats.mean.shape[1:]}, not {mean.shape[1]}.")
        mean[found] = torch.as_tensor(stats.mean[rows[found]]).to(mean)
        var[found] = torch.as_tensor(stats.var[rows[found]]).to(var)
        return mean, var

    def _batch_mapping(self, registered: AnnData) -> np.ndarray:
        """Batch names by registry code for a registered AnnData."""
        manager = self.get_anndata_manager(registered, required=True)
        mapping = manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
        return np.asarray(mapping).astype(str)

    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: str | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Decoded expression in ``[0, 1]``: the original package's ``impute``.

        Each cell is encoded (latent mean) and decoded through the domain-specific BatchNorm of
        ``transform_batch``, or of its own batch.

        Parameters
        ----------
        adata
            AnnData with the model's features. ``None`` uses the training data.
        indices
            Indices of the cells to use. ``None`` uses all.
        transform_batch
            Name of a training batch whose decoder normalisation is applied to every cell.
            ``None`` decodes each cell through its own batch, which must be a training batch.
        batch_size
            Cells per forward pass.
        return_numpy
            Return an array instead of a DataFrame indexed by cells and features.

        Returns
        -------
        Decoded expression of shape ``(n_cells, n_features)``.
        """
        self._check_if_trained(warn=False)
        self.module.eval()
        batch_code = self._batch_code(transform_batch)
        chunks = []
        with self._registered(adata) as registered:
            if batch_code is None:
                self._check_trained_batches(
                    registered, indices, "pass transform_batch with one of the model's batches"
                )
            for tensors in self._data_loader(registered, indices, batch_size):
                batch_index = tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long()
                inference = self.module.inference(tensors[REGISTRY_KEYS.X_KEY])
                generative = self.module.generative(
                    inference[MODULE_KEYS.QZM_KEY], batch_index, transform_batch=batch_code
                )
                chunks.append(generative[MODULE_KEYS.PX_KEY].cpu())
            obs_names = registered.obs_names
        values = torch.cat(chunks).numpy()
        if return_numpy:
            return values
        if indices is not None:
            obs_names = obs_names[np.asarray(indices)]
        return pd.DataFrame(values, index=obs_names, columns=self.feature_names)

    def prepare_query(
        self,
        adata: AnnData | MuData,
        batch_key: str | None = None,
        min_feature_overlap: float = 0.25,
        keep_raw: bool = False,
    ) -> AnnData:
        """Prepare raw counts of new cells exactly as the training data were prepared.

        Applies the recipe recorded by :func:`scalex_scvi.pp.preprocess`: normalisation and log
        as in training, reindexing to the model's features (zeros for features the query lacks),
        and scaling. See :func:`scalex_scvi.pp.prepare_query`.

        Parameters
        ----------
        adata
            Raw counts of the new cells (not modified); may be backed, as in
            :func:`scalex_scvi.pp.prepare_query`. For a model set up with a MuData, a MuData
            whose modality of the model's name holds them (its ``obs`` completed with the
            columns of ``adata.obs`` it lacks).
        batch_key
            Column of ``adata.obs`` holding the query's batches, if any.
        min_feature_overlap
            Smallest fraction of the model's features the query must have.
        keep_raw
            Also store the query's values of all its genes in ``.raw``, transformed as the
            reference's (for plotting genes outside the model's features).

        Returns
        -------
        A new AnnData with the model's features, ready for :meth:`get_latent_representation`.
        """
        if self.preprocess_recipe_ is None:
            raise ValueError(
                "This model has no preprocessing recipe: it was trained on data not prepared by "
                "scalex_scvi.pp.preprocess. Prepare the query the same way yourself."
            )
        return prepare_query(
            self._features_adata(adata),
            self.preprocess_recipe_,
            batch_key=batch_key,
            min_feature_overlap=min_feature_overlap,
            model_batch_key=self.registry_["setup_args"]["batch_key"],
            keep_raw=keep_raw,
        )

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata: AnnData | MuData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        backup_url: str | None = None,
        **kwargs,
    ) -> SCALEX:
        """Load a model saved with :meth:`save`: :meth:`scvi.model.base.BaseModelClass.load`.

        ``adata``, when given, becomes the model's data (and is registered with it, as in
        scvi-tools), so its features must be the model's in the model's order: scvi-tools only
        warns about a mismatch and then reads features by position, which gives wrong latents.
        Here a mismatch is an error. To embed data whose features are in another order, load
        without ``adata`` and pass it to :meth:`get_latent_representation`, which reorders.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            The model's data (e.g. the training data; a MuData for a model set up with one), or
            ``None`` for the data saved with the model (none saved: the model loads without
            data).
        accelerator, device
            Where the model runs (``"auto"``: a GPU where there is one).
        prefix
            Prefix of the saved file names.
        backup_url
            URL to fetch the saved model from if it is not on disk.
        **kwargs
            Further arguments of :meth:`scvi.model.base.BaseModelClass.load`.

        Returns
        -------
        The model, with its trained parameters and preprocessing recipe.
        """
        if adata is not None:
            attributes, saved = _load_saved_files(
                dir_path, False, prefix=prefix, backup_url=backup_url
            )[:2]
            names = adata.var_names
            if isinstance(saved, dict):  # saved from a MuData: features of the modality read
                registry = attributes["registry_"]["field_registries"][REGISTRY_KEYS.X_KEY]
                modality = registry["data_registry"]["mod_key"]
                if not is_mudata(adata):
                    raise ValueError(
                        f"This model was set up with a MuData (modality {modality!r}); pass a "
                        "MuData as adata, or load without adata."
                    )
                saved, names = saved[modality], adata.mod[modality].var_names
            _check_same_features(pd.Index(names), pd.Index(saved))
        return super().load(
            dir_path,
            adata=adata,
            accelerator=accelerator,
            device=device,
            prefix=prefix,
            backup_url=backup_url,
            **kwargs,
        )

    @classmethod
    def load_query_data(
        cls,
        adata: AnnData | MuData,
        reference_model: SCALEX | str | Path,
        accelerator: str = "auto",
        device: int | str = "auto",
    ) -> SCALEX:
        """A model for new batches: the reference model with a decoder normalisation for each.

        The scArches-style entry point of scvi-tools (:meth:`scvi.model.SCVI.load_query_data`).
        SCALEX needs no training to embed new batches (:meth:`get_latent_representation` on
        the reference model does that); what new batches lack is the decoder's normalisation,
        which the ELBO, the reconstruction error, the marginal log-likelihood and decoding a
        cell through its own batch (:meth:`get_normalized_expression`) need. The returned model
        holds the reference's encoder and decoder unchanged, so every cell's latent is exactly
        the reference model's, plus one decoder BatchNorm per batch of ``adata`` that the
        reference lacks. Each starts with the running statistics of that batch's cells (their
        decoder input from the latent means) and the mean scale and shift of the reference
        batches; :meth:`train` then fits the new batches' scale and shift, and nothing else.

        Cells of ``adata`` whose batch the reference knows use that batch's normalisation. The
        returned model is set up with ``adata`` (registered as by :meth:`setup_anndata`). A
        saved query model loads as an ordinary model, every parameter trainable, as in
        scvi-tools.

        Parameters
        ----------
        adata
            The new cells, prepared by the reference's :meth:`prepare_query` (the model's
            features in its order, values in ``[0, 1]``), with the reference's batch column
            naming their batches; a MuData for a reference set up with one.
        reference_model
            The trained reference model, or the directory it was saved to.
        accelerator, device
            Where a reference loaded from a directory runs (``"auto"``: a GPU where there is
            one); the query model runs where the reference runs.

        Returns
        -------
        The query model, trained as far as the reference is; :meth:`train` is optional.

        Examples
        --------
        >>> query = model.prepare_query(raw_query, batch_key="batch")
        >>> query_model = scalex_scvi.SCALEX.load_query_data(query, model)
        >>> query_model.train(max_epochs=50)
        >>> query_model.get_reconstruction_error()
        """
        reference = reference_model
        if not isinstance(reference, SCALEX):
            reference = cls.load(str(reference_model), accelerator=accelerator, device=device)
        reference._check_if_trained(warn=False)
        registry = reference.registry_
        features = reference._features_adata(adata)
        _check_same_features(
            pd.Index(features.var_names),
            reference.feature_names,
            advice="Prepare the new cells with reference_model.prepare_query(raw_counts), which "
            "reindexes them to the model's features.",
        )
        batch_key = registry["setup_args"]["batch_key"]
        if batch_key is not None and batch_key not in features.obs:
            raise KeyError(
                f"adata.obs has no {batch_key!r} column, the reference's batch column; name "
                f"the new cells' batches there (e.g. adata.obs[{batch_key!r}] = 'query')."
            )
        _check_unit_range(reference._registered_matrix(features), "adata")
        setup = getattr(cls, registry.get("setup_method_name", "setup_anndata"))
        setup(adata, source_registry=registry, extend_categories=True, **registry["setup_args"])
        module = reference.module
        model = cls(
            adata,
            n_hidden=module.n_hidden,
            n_latent=module.n_latent,
            kl_weight=module.kl_weight,
            encoder_norm=module.encoder_norm,
        )
        model.preprocess_recipe_ = copy.deepcopy(reference.preprocess_recipe_)
        model.module.load_state_dict(extended_state(module, model.module.n_batch))
        model.to_device(reference.device)
        model.module.eval()
        set_new_domain_statistics(
            model.module, model._data_loader(model.adata, None, None), module.n_batch
        )
        model.module.freeze_reference(module.n_batch)
        model.is_trained_ = True
        return model

    @classmethod
    def load_original(
        cls,
        dir_path: str | Path,
        batch_categories: Sequence[str] | None = None,
        profile: Literal["RNA", "ATAC"] = "RNA",
        accelerator: str = "auto",
        device: int | str = "auto",
    ) -> SCALEX:
        """Load a model trained by the original package (``scalex`` 1.0.4).

        Reads the original's ``checkpoint/config.pt`` (a pickle, read as the original reads it:
        only load checkpoints you trust) and ``checkpoint/model.pt`` into a trained SCALEX
        model without data, so that new data can be projected with this package: embedded
        deterministically (BatchNorm in eval mode; ``batch_norm="per_batch"`` for the
        original's per-batch statistics), mapped onto an :class:`~scalex_scvi.Atlas`, decoded.

        Parameters
        ----------
        dir_path
            The original's output folder (``outdir``) or its ``checkpoint`` folder.
        batch_categories
            Names of the training batches, in the original's domain order. ``None`` reads
            them from ``adata.h5ad`` in the output folder (``obs['batch']``), or names them
            ``"0"``, ``"1"``, ... when it is not there.
        profile
            ``"RNA"`` or ``"ATAC"``: how :meth:`prepare_query` prepares raw counts, as the
            original does for that profile (normalised to 10,000 per cell and log-transformed,
            reindexed to the model's features, MaxAbs-scaled by the maxima of the whole query);
            checked against the original in ``benchmarks/results/original_checkpoint.md``.
        accelerator, device
            Where the model runs, as in :meth:`load` (``"auto"``: a GPU where there is one).

        Returns
        -------
        The model; its batch column is ``"batch"``, as in the original.
        """
        config, state = read_original_checkpoint(dir_path)
        features, n_hidden, n_latent, n_domain = original_architecture(config)
        if batch_categories is None:
            batch_categories = original_batch_names(dir_path, n_domain)
        batch_categories = [str(name) for name in batch_categories]
        if len(batch_categories) != n_domain:
            raise ValueError(
                f"The checkpoint has {n_domain} batches; got {len(batch_categories)} names."
            )
        registry = registry_of(cls, features, batch_categories)
        model = cls(
            registry=registry,
            n_hidden=n_hidden,
            n_latent=n_latent,
            kl_weight=PAPER_KL_WEIGHT,
        )
        model.module.load_state_dict(module_state_from_original(state, n_domain))
        _, _, torch_device = parse_device_args(
            accelerator=accelerator,
            devices=device,
            return_device="torch",
            validate_single_device=True,
        )
        model.to_device(torch_device)
        model.module.eval()
        model.is_trained_ = True
        model.preprocess_recipe_ = original_recipe(features, profile)
        return model

    @property
    def feature_names(self) -> pd.Index:
        """Names of the model's features, in the model's order."""
        state = self.registry_["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
        return pd.Index(np.asarray(state["column_names"]).astype(str))

    @property
    def batch_categories(self) -> pd.Index:
        """Names of the batches the model was trained on."""
        state = self.registry_["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"]
        return pd.Index(state["categorical_mapping"][: self.summary_stats.n_batch])

    def _batch_code(self, name: str | None) -> int | None:
        if name is None:
            return None
        categories = list(self.batch_categories)
        if name not in categories:
            raise ValueError(f"Unknown batch {name!r}; the model knows {categories}.")
        return categories.index(name)

    def _data_loader(
        self, adata: AnnData, indices: Sequence[int] | None, batch_size: int | None
    ) -> Iterator[dict[str, torch.Tensor]]:
        return self._make_data_loader(
            adata=adata,
            indices=indices,
            batch_size=batch_size or INFERENCE_BATCH_SIZE,
            shuffle=False,
        )

    def _registered_matrix(self, adata: AnnData | MuData):
        adata = self._features_adata(adata)
        layer = self.registry_["setup_args"]["layer"]
        return adata.X if layer is None else adata.layers[layer]

    def _features_adata(self, data: AnnData | MuData) -> AnnData:
        """``data``, or for a MuData its modality with the model's features and batch column."""
        if not is_mudata(data):
            return data
        fields = self.registry_["field_registries"]
        modality = fields[REGISTRY_KEYS.X_KEY]["data_registry"].get("mod_key")
        if modality is None:
            raise ValueError(
                "This model was set up with an AnnData (setup_anndata); pass the modality "
                "holding its features (e.g. mdata['rna']), not a MuData."
            )
        adata = modality_with_obs(data, modality)
        batch_key = self.registry_["setup_args"]["batch_key"]
        if batch_key is not None:
            batch_modality = fields[REGISTRY_KEYS.BATCH_KEY]["data_registry"].get("mod_key")
            part = data.mod.get(batch_modality) if batch_modality is not None else data
            source = part.obs if part is not None else pd.DataFrame()
            if batch_key in source:
                adata.obs[batch_key] = source[batch_key].reindex(adata.obs_names).to_numpy()
        return adata

    @contextmanager
    def _registered(
        self, adata: AnnData | None, obs_keys: Sequence[str] = ()
    ) -> Iterator[AnnData]:
        """Yield ``adata`` registered with this model, without touching the caller's object.

        The training data are used as registered. Any other AnnData is wrapped in a light
        AnnData that shares its matrix (features reordered to the model's when needed), carries
        only the batch column (a placeholder when missing) and the ``obs_keys`` columns, and is
        registered with unseen batch categories allowed; the registration is dropped afterwards.
        """
        if adata is None or adata is self.adata:
            yield self._validate_anndata(adata)
            return
        light = self._light_copy(adata, obs_keys)
        setup_args = self.registry_["setup_args"]
        with warnings.catch_warnings():
            # scvi warns about batches with < 3 cells, which matters for training only
            warnings.filterwarnings("ignore", message=".*fewer than 3 cells", category=UserWarning)
            self.setup_anndata(  # an AnnData, also for a model set up with a MuData
                light,
                source_registry=_with_string_batches(self.registry_),
                extend_categories=True,
                batch_key=setup_args["batch_key"],
                layer=setup_args["layer"],
            )
        self._register_manager_for_instance(
            self._get_most_recent_anndata_manager(light, required=True)
        )
        try:
            yield light
        finally:
            self.deregister_manager(light)

    def _light_copy(self, adata: AnnData | MuData, obs_keys: Sequence[str] = ()) -> AnnData:
        """An AnnData sharing ``adata``'s matrix, with the model's features and batch column."""
        adata = self._features_adata(adata)
        features = self.feature_names
        matrix = self._registered_matrix(adata)
        names = pd.Index(adata.var_names)
        if not names.equals(features):
            if not names.is_unique:
                raise ValueError("adata.var_names must be unique.")
            missing = features.difference(names)
            if len(missing) > 0:
                raise ValueError(
                    f"adata lacks {len(missing)} of the model's {len(features)} features "
                    f"(e.g. {list(missing[:5])}). Prepare raw data with model.prepare_query(), "
                    "which reindexes to the model's features."
                )
            matrix = matrix[:, names.get_indexer(features)]
        _check_unit_range(matrix, "adata")
        batch_key = self.registry_["setup_args"]["batch_key"]
        obs = pd.DataFrame(index=pd.Index(adata.obs_names, dtype=str))
        if batch_key is not None:
            if batch_key in adata.obs:
                obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
            else:
                obs[batch_key] = NO_BATCH_CATEGORY
        for key in obs_keys:
            obs[key] = adata.obs[key].to_numpy()
        var = pd.DataFrame(index=features)
        layer = self.registry_["setup_args"]["layer"]
        if layer is None:
            return AnnData(X=matrix, obs=obs, var=var)
        return AnnData(obs=obs, var=var, layers={layer: matrix})


def _with_string_batches(registry: dict) -> dict:
    """``registry`` with its batch categories as strings, as a light copy names its batches.

    A model trained on batch labels that are not strings (e.g. integers) would otherwise meet
    the light copy's string labels as unseen categories, and scvi-tools cannot sort the
    extended mix of types. The order, and so every batch code, is unchanged.
    """
    state = registry["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"]
    mapping = state["categorical_mapping"]
    if all(isinstance(category, str) for category in mapping):
        return registry
    registry = copy.deepcopy(registry)
    state = registry["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"]
    state["categorical_mapping"] = np.asarray(
        [str(category) for category in mapping], dtype=object
    )
    return registry


def _check_same_features(names: pd.Index, features: pd.Index, advice: str | None = None) -> None:
    """Raise unless ``names`` are exactly the model's ``features``, in the same order."""
    if names.equals(features):
        return
    if len(names) == len(features) and set(names) == set(features):
        problem = "holds the model's features in another order"
    else:
        missing, extra = features.difference(names), names.difference(features)
        problem = (
            f"lacks {len(missing)} of the model's {len(features)} features "
            f"(e.g. {list(missing[:3])}) and has {len(extra)} others"
        )
    if advice is None:
        advice = (
            "Pass an AnnData with the model's features in the model's order "
            "(SCALEX.load(dir_path).feature_names), or load without adata and embed it with "
            "get_latent_representation(adata), which reorders (raw counts: prepare_query first)."
        )
    raise ValueError(f"adata {problem}. {advice}")


def _check_unit_range(matrix, what: str, chunk: int = 10_000) -> None:
    """Raise unless every value of ``matrix`` lies in ``[0, 1]`` (backed data read by chunks).

    NaN fails too (the comparisons below would let it through, and the encoder would then fail
    inside torch with a message about distribution parameters).
    """
    if matrix.shape[0] == 0:
        raise ValueError(f"{what} holds no cells.")
    low, high = np.inf, -np.inf
    in_memory = hasattr(matrix, "tocsr") or isinstance(matrix, np.ndarray)
    blocks = (
        [matrix]
        if in_memory
        else (matrix[start : start + chunk] for start in range(0, matrix.shape[0], chunk))
    )
    for block in blocks:
        data = block.data if hasattr(block, "tocsr") else np.asarray(block)
        if data.size:
            block_low = float(data.min())  # NaN when the block holds one
            if np.isnan(block_low):
                raise ValueError(
                    f"{what} holds NaN values; SCALEX expects values in [0, 1] (see "
                    "scalex_scvi.pp.preprocess and model.prepare_query)."
                )
            low, high = min(low, block_low), max(high, float(data.max()))
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"SCALEX expects values in [0, 1], but {what} ranges from {low:.3g} to {high:.3g}. "
            "Prepare it with scalex_scvi.pp.preprocess (training) or model.prepare_query (new "
            "data)."
        )


def default_kl_weight(n_features: int) -> float:
    """KL weight SCALEX uses by default for an input of ``n_features`` features.

    The paper's 0.5 for 1,000 features or more; ``0.5 × n_features / 1000`` below that. The
    reconstruction term of the loss is a sum over features while the KL term is a sum over the
    10 latent dimensions, so with few features the KL dominates: on the 9-protein ADT data
    (338,406 cells, 30,000 iterations) a weight of 0.5 collapsed the posterior to a single point
    (latent standard deviation 0.000, label-transfer macro-F1 0.34), while the scaled weight
    (0.0045) kept a latent standard deviation of 1.0 and a macro-F1 of 0.72
    (``benchmarks/results/kl_weight.md``).

    Parameters
    ----------
    n_features
        Number of input features.

    Returns
    -------
    The KL weight.
    """
    return PAPER_KL_WEIGHT * min(1.0, n_features / FULL_KL_FEATURES)
