"""The tutorial runs end to end as documented (so that it cannot drift from the package)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import scalex_scvi as sx

from scalex_testing import REPO_ROOT, data_dir, shared_path


def _run_tutorial(name: str, cwd) -> str:
    """Run a tutorial script in ``cwd`` with the project's data folder; return its stdout."""
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tutorials" / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "SCALEX_SCVI_DATA_DIR": str(data_dir())},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_online_atlas_tutorial_runs(tmp_path):
    stdout = _run_tutorial("online_atlas.py", tmp_path)
    assert "macro-F1" in stdout and "called Unknown" in stdout
    for name in ("tutorial_projection.png", "tutorial_markers.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    atlas = sx.Atlas.load(tmp_path / "pbmc_atlas")
    assert atlas.n_obs == 1200  # 910 reference cells and the 290 mapped ones
    assert set(atlas.adata.obs["source"]) == {"reference", "3pv1"}


@pytest.mark.slow  # 10,000 iterations: 4 to 6 minutes on 2 cores
def test_cite_seq_mudata_tutorial_runs(tmp_path):
    """The MuData tutorial: the RNA embedding predicts the proteins, the hashtags stay mixed.

    ``make test-slow``; the fast suite covers its MuData calls on small trainings
    (``test_mudata.py``) and the reading of an ``.h5mu`` file (``test_io.py``).
    """
    shared_path("citefuse_eccite_pbmc_500_rna_adt.h5mu")
    stdout = _run_tutorial("cite_seq_mudata.py", tmp_path)
    medians = dict(
        re.findall(r"^(SCALEX \(10-d\)|shuffled cells \(baseline\)) +(-?[\d.]+)$", stdout, re.M)
    )
    assert float(medians["SCALEX (10-d)"]) > 0.3  # 0.46 when written
    assert abs(float(medians["shuffled cells (baseline)"])) < 0.1
    mixing = float(
        re.search(r"hashtag mixing in the SCALEX space \(1 = perfect\): ([\d.]+)", stdout)[1]
    )
    assert mixing > 0.9
    assert (tmp_path / "tutorial_cite_seq.png").stat().st_size > 10_000
