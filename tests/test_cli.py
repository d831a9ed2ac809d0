from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest

import scalex_scvi as sx
from scalex_scvi._cli import build_parser, main

SMALL = ["--min_features", "50", "--n_top_features", "300", "-q"]


@pytest.fixture(scope="module")
def files(pbmc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    paths = {}
    for name in ("3pv2", "5p", "3pv1"):
        part = pbmc[pbmc.obs["batch"] == name].copy()
        del part.obs["batch"]
        part.obs["cell_type"] = part.obs["cell_type"].astype(str)
        paths[name] = folder / f"{name}.h5ad"
        part.write_h5ad(paths[name])
    paths["all"] = folder / "all.h5ad"
    pbmc[::3].copy().write_h5ad(paths["all"])  # 400 cells keep scib-metrics quick
    return paths


@pytest.fixture(scope="module")
def integrated(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("integrated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main(
            [
                "integrate",
                "-d",
                str(files["3pv2"]),
                str(files["5p"]),
                "-b",
                "3pv2",
                "5p",
                "-o",
                str(out),
                "--max_iteration",
                "20",
                "--assess",
                *SMALL,
            ]
        )
    return out


@pytest.mark.parametrize("command", ["integrate", "project", "map", "benchmark", "demo"])
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    expected = {
        "integrate": [
            "--data_list",
            "--batch_categories",
            "--batch_name",
            "--projection",
            "--outdir",
            "--profile",
            "--min_features",
            "--n_top_features",
            "--max_iteration",
            "--impute",
            "--processed",
            "--backed",
            "--assess",
        ],
        "project": ["--projection", "--repeat", "--data_list"],
        "map": ["--atlas", "--extend", "--source", "--keep_raw", "--backed"],
        "benchmark": ["--methods", "--label_key"],
        "demo": ["--outdir", "--max_iteration"],
    }[command]
    for flag in expected:
        assert flag in text, flag


def test_top_level_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("integrate", "project", "map", "benchmark", "demo"):
        assert command in text


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"scalex-scvi {sx.__version__}"


def test_input_errors_are_messages_not_tracebacks(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCALEX_SCVI_TRACEBACK", raising=False)
    missing = tmp_path / "missing.h5ad"
    with pytest.raises(SystemExit) as exit_:
        main(["integrate", "-d", str(missing), "-o", str(tmp_path / "out")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == f"scalex-scvi integrate: error: {missing} does not exist."
    with pytest.raises(SystemExit) as exit_:
        main(["map", "--atlas", str(tmp_path), "-d", str(missing)])
    assert exit_.value.code == 1
    assert "no atlas.json (write one with Atlas.save)" in capsys.readouterr().err
    monkeypatch.setenv("SCALEX_SCVI_TRACEBACK", "1")  # the traceback, on request
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["integrate", "-d", str(missing), "-o", str(tmp_path / "out")])


def test_integrate_writes_everything(integrated):
    adata = ad.read_h5ad(integrated / "adata.h5ad")
    assert adata.n_obs == 910 and "latent" in adata.obsm and "X_scalex_umap" in adata.obsm
    assert set(adata.obs["batch"]) == {"3pv2", "5p"}
    assert "batch_entropy_mixing_score" in adata.uns
    for name in ("umap.png", "log.txt", "model/model.pt"):
        assert (integrated / name).exists()
    log = (integrated / "log.txt").read_text()
    assert "command:" in log and '"scvi-tools"' in log and '"max_iteration": 20' in log


def test_project_onto_the_saved_model(integrated, files, tmp_path):
    main(
        [
            "project",
            "-d",
            str(files["3pv1"]),
            "-p",
            str(integrated),
            "-o",
            str(tmp_path),
            "--ignore_umap",
            *SMALL,
        ]
    )
    adata = ad.read_h5ad(tmp_path / "adata.h5ad")
    assert adata.obs["projection"].value_counts().to_dict() == {"reference": 910, "query": 290}
    main(
        [
            "integrate",
            "-d",
            str(files["3pv1"]),
            "-p",
            str(integrated),
            "--repeat",
            "-o",
            str(tmp_path / "alone"),
            "--ignore_umap",
            *SMALL,
        ]
    )
    assert ad.read_h5ad(tmp_path / "alone" / "adata.h5ad").n_obs == 290


def _map_cli(atlas_dir, data, outdir, *extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main(["map", "--atlas", str(atlas_dir), "-d", str(data), "-o", str(outdir), *extra])
    return ad.read_h5ad(outdir / "mapped.h5ad")


def test_map_onto_an_atlas_and_extend(integrated, files, tmp_path, capsys):
    model = sx.SCALEX.load(integrated / "model")
    reference = ad.read_h5ad(integrated / "adata.h5ad")
    atlas = sx.Atlas.build(
        model, reference[:, list(model.feature_names)].copy(), label_key="cell_type"
    )
    atlas.save(tmp_path / "atlas")
    mapped = _map_cli(
        tmp_path / "atlas", files["3pv1"], tmp_path / "mapped", "--extend", "--source", "3pv1"
    )
    assert mapped.n_obs == 290 and "cell_type_predicted" in mapped.obs
    assert (tmp_path / "mapped" / "projection.png").exists()
    assert sx.Atlas.load(tmp_path / "atlas").n_obs == 910 + 290
    assert mapped.raw is None
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # the same cells a second time
        _map_cli(tmp_path / "atlas", files["3pv1"], tmp_path / "again", "--extend")
    assert exit_.value.code == 1
    assert "scalex-scvi map: error: 290 of the 290 mapped cells" in capsys.readouterr().err
    assert sx.Atlas.load(tmp_path / "atlas").n_obs == 910 + 290
    _map_cli(
        tmp_path / "atlas", files["3pv1"], tmp_path / "again", "--extend", "--index_unique", "-"
    )
    assert sx.Atlas.load(tmp_path / "atlas").n_obs == 910 + 290 + 290
    balanced = _map_cli(
        tmp_path / "atlas",
        files["3pv1"],
        tmp_path / "balanced",
        "--batch_norm",
        "balanced",
        "--keep_raw",
    )
    assert balanced.n_obs == 290 and np.isfinite(balanced.obsm["X_scalex"]).all()
    assert balanced.raw is not None and balanced.raw.n_vars > balanced.n_vars
    assert np.abs(balanced.obsm["X_scalex"] - mapped.obsm["X_scalex"]).mean() > 1e-3
    backed = _map_cli(tmp_path / "atlas", files["3pv1"], tmp_path / "backed", "--backed")
    np.testing.assert_array_equal(backed.obsm["X_scalex"], mapped.obsm["X_scalex"])


def test_benchmark_command(files, tmp_path, capsys):
    main(
        [
            "benchmark",
            "-d",
            str(files["all"]),
            "--methods",
            "SCALEX",
            "PCA (unintegrated)",
            "--max_iteration",
            "20",
            "--min_features",
            "50",
            "--name",
            "pbmc",
            "-o",
            str(tmp_path),
        ]
    )
    assert (tmp_path / "benchmark_pbmc.csv").exists()
    assert "Total" in capsys.readouterr().out
