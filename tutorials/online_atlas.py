# %% [markdown]
# # An expandable PBMC atlas with SCALEX
#
# Build a reference from two 10x chemistries, map a third one onto it **without retraining**,
# check the transferred labels, and grow the atlas. Runs in about two minutes on two CPU cores
# with the data shipped in the package:
#
# ```bash
# .venv/bin/python tutorials/online_atlas.py
# ```
#
# (A percent-format script: open it as a notebook with jupytext, or run it as is.)

# %%
import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import scanpy as sc
import scvi

import scalex_scvi as sx

scvi.settings.seed = 0
raw = sx.datasets.pbmc_3chemistries()
reference_raw = raw[raw.obs["batch"].isin(["3pv2", "5p"])].copy()
query_raw = raw[raw.obs["batch"] == "3pv1"].copy()

# %% [markdown]
# ## 1. Reference: preprocess and train
# The shipped file holds only 1,767 genes, so `min_features` is lowered from the paper's 600.

# %%
reference = sx.pp.preprocess(reference_raw, batch_key="batch", min_features=50)
sx.SCALEX.setup_anndata(reference, batch_key="batch")
model = sx.SCALEX(reference)
model.train(max_iterations=3000)

# %% [markdown]
# ## 2. The atlas: embeddings, labels and a 2-D map that new cells can be placed on

# %%
atlas = sx.Atlas.build(model, reference, label_key="cell_type")
print(atlas)

# %% [markdown]
# ## 3. Map a new chemistry: raw counts in, embedding + map position + labels out

# %%
mapped = atlas.map(query_raw, batch_key="batch", source="3pv1")
print(mapped.obs[["cell_type", "cell_type_predicted", "cell_type_probability"]].head())
scores = sx.tl.label_transfer_scores(
    mapped.obs["cell_type"],
    mapped.obs["cell_type_predicted"],
    reference_labels=reference.obs["cell_type"].unique(),
)
print({k: round(v, 3) for k, v in scores.items()})

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
atlas.plot_projection(mapped, ax=axes[0], title="3' v1 cells on the atlas (transferred labels)")
sx.pl.confusion_matrix(
    sx.tl.confusion_matrix(mapped.obs["cell_type"], mapped.obs["cell_type_predicted"]),
    ax=axes[1],
    title="known vs transferred",
)
fig.tight_layout()
fig.savefig("tutorial_projection.png", dpi=100)

# %% [markdown]
# ### Adapting to the new chemistry
# By default the frozen encoder normalises its hidden layer with the statistics learnt on the
# reference, so a cell's embedding depends on that cell only. `batch_norm="balanced"` instead
# matches each query batch's statistics to those of the reference cells of the same types (in the
# reference's proportions): it corrects a shift of the whole batch, such as another chemistry's
# depth, without normalising away a different mix of cell types. A cell's embedding then depends
# on its batch. Neither choice wins everywhere (`benchmarks/results/projection.md`,
# `projection_seeds.md`); where some query cells carry known labels, compare both as below.
# For label transfer the benchmarks recommend balanced statistics with an atlas built with
# `transfer_kwargs={"metric": "cosine"}`: macro-F1 at least scArches' (same classifier) on 5 of 7
# projection splits, 2 of 7 with the defaults (`benchmarks/results/label_atlas.md`). It labels
# a draw of at most 500 cells per query batch before embedding every cell again
# (`balance_cells`), which adds little time even on large queries.

# %%
balanced = atlas.map(query_raw, batch_key="batch", source="3pv1", batch_norm="balanced")
for name, result in (("running", mapped), ("balanced", balanced)):
    f1 = sx.tl.label_transfer_scores(
        result.obs["cell_type"],
        result.obs["cell_type_predicted"],
        reference_labels=reference.obs["cell_type"].unique(),
    )["macro_f1"]
    print(f"{name}: macro-F1 {f1:.3f}")

# %% [markdown]
# ### Which cells were called "Unknown"?
# `keep_raw=True` also keeps the query's log-normalised values of every gene in `.raw`, as
# `preprocess` does for the reference, so markers can be plotted on the mapped cells (the model's
# `X` holds only its features, scaled to [0, 1]; on a full transcriptome `.raw` also holds the
# genes outside the 2,000 highly variable ones). Cell types that the reference lacks are called
# "Unknown" when they lie away from every reference type; one close to a reference type is
# mostly given that type's label (`benchmarks/results/novel_types.md`). Where new types are
# expected, build the atlas with `transfer_kwargs={"distance_quantile": 0.95}`, or with
# `{"per_label_cutoff": True}` (a cutoff per reference type), which finds most of them for fewer
# known cells called "Unknown" (`benchmarks/results/label_rules.md`).

# %%
with_genes = atlas.map(query_raw, batch_key="batch", source="3pv1", keep_raw=True)
unknown = with_genes.obs["cell_type_predicted"] == "Unknown"
print(f"{unknown.sum()} cells called Unknown; their known labels:")
print(with_genes.obs.loc[unknown, "cell_type"].astype(str).value_counts().to_dict())
markers = ["CD3E", "CD8A", "NKG7", "MS4A1", "CD14", "FCGR3A", "FCER1A", "PPBP"]
sc.pl.dotplot(with_genes, markers, groupby="cell_type_predicted", use_raw=True, show=False)
plt.savefig("tutorial_markers.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## 4. Grow the atlas; the cells already in it do not move

# %%
before = atlas.adata.obsm["X_umap"].copy()
atlas.extend(mapped)
assert (atlas.adata.obsm["X_umap"][: len(before)] == before).all()
atlas.save("pbmc_atlas", overwrite=True)
print(sx.Atlas.load("pbmc_atlas"))
