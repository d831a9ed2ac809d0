from __future__ import annotations

import gzip

import h5py
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import io as spio
from scipy import sparse

import scalex_scvi as sx

from scalex_testing import read_shared, shared_path


@pytest.fixture(scope="module")
def small(pbmc):
    """60 cells × 40 genes of the shipped PBMC data, with integer counts."""
    return pbmc[:60, :40].copy()


def _dense(m):
    return m.toarray() if sparse.issparse(m) else np.asarray(m)


def _same(read, source):
    assert list(read.obs_names) == list(source.obs_names)
    assert list(read.var_names) == list(source.var_names)
    np.testing.assert_array_equal(_dense(read.X), _dense(source.X))


def test_h5ad_and_backed(small, tmp_path):
    small.write_h5ad(tmp_path / "a.h5ad")
    _same(sx.io.read(tmp_path / "a.h5ad"), small)
    backed = sx.io.read(tmp_path / "a.h5ad", backed=True)
    assert backed.isbacked


def test_mtx_folder_10x_layout(small, tmp_path):
    folder = tmp_path / "filtered_feature_bc_matrix"
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        spio.mmwrite(fh, sparse.csr_matrix(small.X).T.tocoo())
    pd.Series(small.obs_names).to_csv(
        folder / "barcodes.tsv.gz", sep="\t", header=False, index=False
    )
    pd.DataFrame(
        {
            "id": [f"ENSG{i:05d}" for i in range(small.n_vars)],
            "name": small.var_names,
            "type": "Gene Expression",
        }
    ).to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    read = sx.io.read(folder)
    _same(read, small)
    assert read.var["feature_id"].iloc[0] == "ENSG00000"


def test_mtx_folder_original_layout(small, tmp_path):
    folder = tmp_path / "sample"
    folder.mkdir()
    spio.mmwrite(folder / "count.mtx", sparse.csr_matrix(small.X).T.tocoo())
    pd.Series(small.obs_names).to_csv(folder / "barcode.txt", sep="\t", header=False, index=False)
    pd.Series(small.var_names).to_csv(folder / "gene.txt", sep="\t", header=False, index=False)
    _same(sx.io.read(folder), small)


def test_10x_h5(small, tmp_path):
    matrix = sparse.csc_matrix(_dense(small.X).T.astype(np.int32))  # features x cells
    with h5py.File(tmp_path / "filtered_feature_bc_matrix.h5", "w") as fh:
        group = fh.create_group("matrix")
        group["data"], group["indices"], group["indptr"] = (
            matrix.data,
            matrix.indices,
            matrix.indptr,
        )
        group["shape"] = np.array(matrix.shape, dtype=np.int32)
        group["barcodes"] = np.array(small.obs_names, dtype="S")
        features = group.create_group("features")
        features["id"] = np.array([f"ENSG{i:05d}" for i in range(small.n_vars)], dtype="S")
        features["name"] = np.array(small.var_names, dtype="S")
        features["feature_type"] = np.array(["Gene Expression"] * small.n_vars, dtype="S")
        features["genome"] = np.array(["GRCh38"] * small.n_vars, dtype="S")
        features["_all_tag_keys"] = np.array([b"genome"])
    _same(sx.io.read(tmp_path / "filtered_feature_bc_matrix.h5"), small)


@pytest.mark.parametrize(
    "name", ["counts.csv", "counts.tsv", "counts.txt", "counts.csv.gz", "counts.txt.gz"]
)
def test_text_tables_genes_by_cells(small, tmp_path, name):
    sep = "," if ".csv" in name else "\t"
    frame = pd.DataFrame(_dense(small.X).T, index=small.var_names, columns=small.obs_names)
    frame.to_csv(tmp_path / name, sep=sep)
    _same(sx.io.read(tmp_path / name), small)


def test_h5mu_modality():
    path = shared_path("citefuse_eccite_pbmc_500_rna_adt.h5mu")
    mdata = md.read_h5mu(path)
    rna = sx.io.read(path, modality="rna")
    assert rna.shape == mdata.mod["rna"].shape and "batch" in rna.obs
    prot = sx.io.read(f"{path}/prot")
    assert prot.n_vars == 49
    with pytest.raises(ValueError, match="modalities"):
        sx.io.read(path)
    with pytest.raises(TypeError, match="several modalities"):
        sx.io.read_many(mdata)
    with pytest.raises(TypeError, match="several modalities"):
        sx.integrate([mdata["rna"], mdata], ignore_umap=True, show=False)


def test_glob_concatenates_with_sub_batch(small, tmp_path):
    small[:30].write_h5ad(tmp_path / "part1.h5ad")
    small[30:].write_h5ad(tmp_path / "part2.h5ad")
    read = sx.io.read(tmp_path / "part*.h5ad")
    _same(read, small)
    assert list(read.obs["sub_batch"].unique()) == ["part1.h5ad", "part2.h5ad"]


def test_read_many_does_not_modify_inputs(small):
    a, b = small[:30].copy(), small[30:].copy()
    before = a.obs.copy()
    combined = sx.io.read_many([a, b], ["x", "y"], batch_key="sample")
    assert list(combined.obs["sample"].unique()) == ["x", "y"]
    assert a.obs.equals(before) and "sample" not in a.obs
    with pytest.raises(ValueError, match="batch_categories"):
        sx.io.read_many([a, b], ["x"])


def test_unknown_format(tmp_path):
    (tmp_path / "x.loom").write_text("")
    with pytest.raises(ValueError, match="Cannot read"):
        sx.io.read(tmp_path / "x.loom")
    with pytest.raises(FileNotFoundError):
        sx.io.read(tmp_path / "missing.h5ad")


def test_lung_table_roundtrip(tmp_path):
    lung = read_shared("cellbench_lung_celllines.h5ad")[:20, :50]
    frame = pd.DataFrame(_dense(lung.X).T, index=lung.var_names, columns=lung.obs_names)
    frame.to_csv(tmp_path / "lung.tsv.gz", sep="\t")
    _same(sx.io.read(tmp_path / "lung.tsv.gz"), lung)
