from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse
from sklearn.preprocessing import MaxAbsScaler

import scalex_scvi as sx

from scalex_testing import assert_adata_equal


def _dense(m):
    return m.toarray() if sparse.issparse(m) else np.asarray(m)


def _scanpy_pipeline(raw, min_features, n_top, per_batch):
    """The paper's recipe written with scanpy and scikit-learn directly."""
    a = raw.copy()
    a = a[:, ~a.var_names.str.startswith(("ERCC-", "MT-", "mt-"))].copy()
    sc.pp.filter_cells(a, min_genes=min_features)
    sc.pp.filter_genes(a, min_cells=3)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=n_top, batch_key="batch")
    a = a[:, a.var["highly_variable"]].copy()
    x = _dense(a.X).astype(np.float64)
    if per_batch:
        for b in a.obs["batch"].unique():
            rows = (a.obs["batch"] == b).to_numpy()
            x[rows] = MaxAbsScaler().fit_transform(x[rows])
    else:
        x = MaxAbsScaler().fit_transform(x)
    return a, x


@pytest.mark.parametrize("scale", ["batch", "global"])
def test_preprocess_matches_scanpy(reference_raw, scale):
    out = sx.pp.preprocess(
        reference_raw, batch_key="batch", min_features=150, n_top_features=300, scale=scale
    )
    expected, x = _scanpy_pipeline(reference_raw, 150, 300, per_batch=scale == "batch")
    assert list(out.obs_names) == list(expected.obs_names)
    assert list(out.var_names) == list(expected.var_names)
    np.testing.assert_allclose(_dense(out.X), x, rtol=1e-5, atol=1e-6)
    # raw counts of the kept cells and features are kept
    counts = reference_raw[out.obs_names, out.var_names].X
    np.testing.assert_array_equal(_dense(out.layers["counts"]), _dense(counts))
    assert out.raw is not None and out.raw.n_vars >= out.n_vars
    recipe = out.uns[sx.pp.RECIPE_KEY]
    assert recipe["scale"] == scale and recipe["profile"] == "RNA"
    assert list(recipe["features"]) == list(out.var_names)


def test_scaling_ranges(reference_raw):
    per_batch = sx.pp.preprocess(reference_raw, batch_key="batch", min_features=50, scale="batch")
    for b in per_batch.obs["batch"].unique():
        block = _dense(per_batch[per_batch.obs["batch"] == b].X)
        nonzero = block.max(0) > 0
        np.testing.assert_allclose(block.max(0)[nonzero], 1.0, rtol=1e-6)
    glob = sx.pp.preprocess(reference_raw, batch_key="batch", min_features=50, scale="global")
    x = _dense(glob.X)
    assert x.min() >= 0 and x.max() == pytest.approx(1.0)
    assert x.max(0)[x.max(0) > 0] == pytest.approx(1.0)


def test_preprocess_does_not_modify_input(reference_raw):
    before = reference_raw.copy()
    sx.pp.preprocess(reference_raw, batch_key="batch", min_features=50)
    assert_adata_equal(reference_raw, before)


def test_min_features_too_high_is_a_clear_error(reference_raw):
    with pytest.raises(ValueError, match=r"median cell has .* Lower min_features"):
        sx.pp.preprocess(reference_raw, batch_key="batch")  # the paper's 600 > any cell here


def test_cell_filter_warns_when_it_removes_a_batch_or_most_cells(reference_raw):
    raw = reference_raw.copy()
    x = sparse.lil_matrix(raw.X)
    in_5p = np.flatnonzero((raw.obs["batch"] == "5p").to_numpy())
    x[in_5p, 30:] = 0  # 5p cells keep at most 30 detected genes
    raw.X = sparse.csr_matrix(x)
    n_5p = in_5p.size
    expected = rf"removed {n_5p:,} of {raw.n_obs:,} cells.*batch\(es\) 5p"
    with pytest.warns(UserWarning, match=expected):
        out = sx.pp.preprocess(raw, batch_key="batch", min_features=50)
    assert set(out.obs["batch"]) == {"3pv2"}
    assert out.n_obs == raw.n_obs - n_5p

    nuclear = ~reference_raw.var_names.str.startswith(("ERCC-", "MT-", "mt-"))  # dropped first
    n_detected = np.asarray((reference_raw.X[:, nuclear] > 0).sum(axis=1)).ravel()
    threshold = int(np.quantile(n_detected, 0.8))  # removes about 80 % of the cells
    n_removed = int((n_detected < threshold).sum())
    with pytest.warns(UserWarning, match=rf"min_features={threshold} removed {n_removed:,} of"):
        sx.pp.preprocess(reference_raw, batch_key="batch", min_features=threshold)


def test_cell_filter_is_quiet_when_it_removes_few_cells(reference_raw, recwarn):
    out = sx.pp.preprocess(reference_raw, batch_key="batch", min_features=50)
    assert out.n_obs > reference_raw.n_obs / 2
    assert not [w for w in recwarn if "min_features" in str(w.message)]
    assert not [w for w in recwarn if "non-integer" in str(w.message)]  # counts are counts


def test_normalised_input_warns_that_it_is_not_counts(reference, reference_raw, query_raw):
    normalised = reference_raw.copy()
    sc.pp.normalize_total(normalised)
    sc.pp.log1p(normalised)
    with pytest.warns(UserWarning, match="non-integer values"):
        sx.pp.preprocess(normalised, batch_key="batch", min_features=50)
    logged_query = query_raw.copy()
    sc.pp.log1p(logged_query)
    with pytest.warns(UserWarning, match="non-integer values"):
        sx.pp.prepare_query(logged_query, reference.uns[sx.pp.RECIPE_KEY])
    in_layer = normalised.copy()
    in_layer.layers["counts"] = reference_raw.X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # counts named by layer=: no warning
        warnings.filterwarnings("ignore", message=".*min_features", category=UserWarning)
        sx.pp.preprocess(in_layer, batch_key="batch", min_features=50, layer="counts")


def test_bad_arguments(reference_raw):
    with pytest.raises(KeyError, match="nope"):
        sx.pp.preprocess(reference_raw, batch_key="nope", min_features=50)
    unlabelled = reference_raw.copy()
    unlabelled.obs["batch"] = unlabelled.obs["batch"].astype(object)
    unlabelled.obs.iloc[:3, unlabelled.obs.columns.get_loc("batch")] = None
    with pytest.raises(ValueError, match="3 cells have no batch"):
        sx.pp.preprocess(unlabelled, batch_key="batch", min_features=50)
    with pytest.raises(ValueError, match="profile"):
        sx.pp.preprocess(reference_raw, profile="DNA", min_features=50)
    negative = reference_raw.copy()
    negative.X = negative.X.toarray() - 1
    with pytest.raises(ValueError, match="negative"):
        sx.pp.preprocess(negative, min_features=0)


def test_gene_list_selection_fills_missing_with_zero(reference_raw):
    genes = [*list(reference_raw.var_names[:20]), "NOT_A_GENE"]
    out = sx.pp.preprocess(reference_raw, min_features=50, n_top_features=genes)
    assert list(out.var_names) == genes
    assert _dense(out.X[:, -1]).sum() == 0


def test_prepare_query_reproduces_reference_preparation(reference_raw):
    # with no gene filtering the library sizes agree, so the recipe must reproduce X exactly
    ref = sx.pp.preprocess(reference_raw, batch_key="batch", min_features=0, min_cells=0)
    again = sx.pp.prepare_query(reference_raw, ref.uns[sx.pp.RECIPE_KEY], batch_key="batch")
    assert list(again.var_names) == list(ref.var_names)
    np.testing.assert_allclose(_dense(again.X), _dense(ref.X), rtol=1e-5, atol=1e-6)
    glob = sx.pp.preprocess(reference_raw, min_features=0, min_cells=0, scale="global")
    again = sx.pp.prepare_query(reference_raw, glob.uns[sx.pp.RECIPE_KEY])
    np.testing.assert_allclose(_dense(again.X), _dense(glob.X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("profile", ["RNA", "ADT", "ATAC"])
def test_prepare_query_keep_raw_matches_reference_raw(reference_raw, profile):
    # with no filtering, a query of the reference's own cells gets the reference's .raw
    raw = reference_raw[:120].copy()
    raw.var_names = ["MT-" + g if i < 3 else g for i, g in enumerate(raw.var_names)]
    kwargs = {"n_top_features": 200} if profile != "ADT" else {}
    ref = sx.pp.preprocess(raw, profile=profile, min_features=0, min_cells=0, **kwargs)
    before = raw.copy()
    plain = sx.pp.prepare_query(raw, ref.uns[sx.pp.RECIPE_KEY])
    out = sx.pp.prepare_query(raw, ref.uns[sx.pp.RECIPE_KEY], keep_raw=True)
    assert plain.raw is None
    assert list(out.raw.var_names) == list(ref.raw.var_names)
    assert list(out.raw.obs_names) == list(ref.obs_names)
    np.testing.assert_allclose(_dense(out.raw.X), _dense(ref.raw.X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_dense(out.X), _dense(plain.X))
    assert (_dense(raw.X) == _dense(before.X)).all() and raw.raw is None


def test_prepare_query_reindexes_with_warning_and_errors(reference, query_raw):
    recipe = reference.uns[sx.pp.RECIPE_KEY]
    features = list(recipe["features"])
    shuffled = query_raw[:, query_raw.var_names[::-1]].copy()
    full = sx.pp.prepare_query(query_raw, recipe, batch_key="batch")
    assert list(full.var_names) == features
    np.testing.assert_allclose(
        _dense(sx.pp.prepare_query(shuffled, recipe, batch_key="batch").X), _dense(full.X)
    )
    partial = query_raw[:, [g for g in query_raw.var_names if g not in features[:40]]].copy()
    with pytest.warns(
        UserWarning, match=r"The query lacks 40 of the model's 400 features \(10.0%\)"
    ):
        out = sx.pp.prepare_query(partial, recipe, batch_key="batch")
    assert _dense(out.X[:, :40]).sum() == 0
    tiny = query_raw[:, features[:10]].copy()
    with pytest.raises(ValueError, match="The query has only 10 of the model's 400 features"):
        sx.pp.prepare_query(tiny, recipe)


def test_prepare_query_keeps_every_cell_and_copies_batch(reference, query_raw):
    q = query_raw.copy()
    q.obs = q.obs.rename(columns={"batch": "sample"})
    out = sx.pp.prepare_query(
        q, reference.uns[sx.pp.RECIPE_KEY], batch_key="sample", model_batch_key="batch"
    )
    assert out.n_obs == q.n_obs
    assert (out.obs["batch"] == q.obs["sample"]).all()
    assert "batch" not in q.obs
    q.obs["sample"] = q.obs["sample"].astype(object)
    q.obs.iloc[:2, q.obs.columns.get_loc("sample")] = np.nan
    with pytest.raises(ValueError, match="2 cells have no batch"):
        sx.pp.prepare_query(q, reference.uns[sx.pp.RECIPE_KEY], batch_key="sample")


@pytest.mark.parametrize("dense", [False, True])
def test_prepare_query_reads_a_backed_query_in_blocks(reference, query_raw, tmp_path, dense):
    from scalex_scvi.pp import _preprocess

    on_disk = query_raw.copy()
    if dense:
        on_disk.X = _dense(on_disk.X)
    on_disk.write_h5ad(tmp_path / "query.h5ad")
    backed = ad.read_h5ad(tmp_path / "query.h5ad", backed="r")
    recipe = reference.uns[sx.pp.RECIPE_KEY]
    expected = sx.pp.prepare_query(query_raw, recipe, batch_key="batch", keep_raw=True)
    n_blocks = -(-query_raw.n_obs // 100)
    assert n_blocks >= 3
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_preprocess, "_BACKED_BLOCK_ROWS", 100)
        got = sx.pp.prepare_query(backed, recipe, batch_key="batch", keep_raw=True)
    assert backed.isbacked and backed.n_obs == query_raw.n_obs
    assert list(got.obs_names) == list(query_raw.obs_names)
    assert list(got.var_names) == list(expected.var_names)
    np.testing.assert_array_equal(_dense(got.X), _dense(expected.X))
    np.testing.assert_array_equal(_dense(got.layers["counts"]), _dense(expected.layers["counts"]))
    np.testing.assert_array_equal(_dense(got.raw.X), _dense(expected.raw.X))
    backed.file.close()


def test_atac_profile_binarises_and_keeps_frequent_peaks():
    rng = np.random.default_rng(0)
    counts = sparse.random(60, 50, density=0.3, random_state=0, format="csr") * 4
    counts.data = np.ceil(counts.data)
    adata = sc.AnnData(counts.astype(np.float32))
    adata.obs["batch"] = pd.Categorical(rng.choice(["a", "b"], 60))
    out = sx.pp.preprocess(adata, profile="ATAC", min_features=1, min_cells=1, n_top_features=10)
    assert set(np.unique(_dense(out.X))) <= {0.0, 1.0}
    frequency = np.asarray((counts > 0).sum(0)).ravel()
    kept = out.var_names.astype(int)
    assert frequency[kept].min() >= np.sort(frequency)[-10]


def test_atac_profile_without_binarising_normalises_as_the_original():
    # binarize=False: scanpy's normalize_total + log1p of the peak counts, MaxAbs-scaled; a
    # query of the same cells prepared with the recipe gets the same values
    counts = sparse.random(60, 50, density=0.3, random_state=1, format="csr") * 4
    counts.data = np.ceil(counts.data)
    adata = sc.AnnData(counts.astype(np.float32))
    adata.obs["batch"] = pd.Categorical(np.repeat(["a", "b"], 30))
    out = sx.pp.preprocess(
        adata, profile="ATAC", min_features=1, min_cells=1, n_top_features=0, binarize=False
    )
    expected = adata[:, np.asarray((counts > 0).sum(0)).ravel() > 0].copy()
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    expected_x = _dense(expected.X) / _dense(expected.X).max(0)
    np.testing.assert_allclose(_dense(out.X), expected_x, rtol=1e-5)
    assert len(np.unique(_dense(out.X))) > 2  # not binary
    recipe = out.uns[sx.pp.RECIPE_KEY]
    assert recipe["binarize"] is False and recipe["scale"] == "global"
    query = sx.pp.prepare_query(adata, recipe)
    np.testing.assert_allclose(_dense(query.X), _dense(out.X), rtol=1e-5)
    sx.SCALEX.setup_anndata(out, batch_key="batch")  # the model keeps the recipe
    query = sx.SCALEX(out).prepare_query(adata, batch_key="batch")
    np.testing.assert_allclose(_dense(query.X), _dense(out.X), rtol=1e-5)
    # the default (and recipes written before the option existed) binarise
    binary = sx.pp.preprocess(adata, profile="ATAC", min_features=1, min_cells=1)
    old_recipe = {k: v for k, v in binary.uns[sx.pp.RECIPE_KEY].items() if k != "binarize"}
    assert set(np.unique(_dense(sx.pp.prepare_query(adata, old_recipe).X))) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="binarize applies to the ATAC profile"):
        sx.pp.preprocess(adata, profile="RNA", binarize=False)


def test_adt_profile_is_in_unit_range():
    rng = np.random.default_rng(0)
    adata = sc.AnnData(rng.poisson(20, size=(40, 9)).astype(np.float32))
    adata.obs["batch"] = pd.Categorical(rng.choice(["a", "b"], 40))
    out = sx.pp.preprocess(adata, profile="ADT")
    x = _dense(out.X)
    assert out.n_vars == 9 and x.min() >= 0 and x.max() == pytest.approx(1.0)


def test_prepare_query_normalises_over_every_kept_gene_and_accepts_dense(reference_raw):
    # library sizes are taken over every kept gene (MT excluded), not only the model's features;
    # dense and integer input give the same result as sparse float input
    raw = reference_raw[:50].copy()
    raw.var_names = ["MT-" + g if i < 5 else g for i, g in enumerate(raw.var_names)]
    ref = sx.pp.preprocess(raw, min_features=0, min_cells=0, n_top_features=100)
    recipe = ref.uns[sx.pp.RECIPE_KEY]
    expected = raw[:, ~raw.var_names.str.startswith(("ERCC-", "MT-", "mt-"))].copy()
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    expected = _dense(expected[:, list(recipe["features"])].X) / np.asarray(recipe["feature_max"])
    dense = raw.copy()
    dense.X = _dense(dense.X).astype(np.int64)
    for given in (raw, dense):
        out = sx.pp.prepare_query(given, recipe)
        np.testing.assert_allclose(_dense(out.X), np.minimum(expected, 1), rtol=1e-5, atol=1e-6)
    empty = raw[:2].copy()
    empty.X = sparse.csr_matrix(empty.shape, dtype=np.float32)
    assert _dense(sx.pp.prepare_query(empty, recipe).X).sum() == 0
