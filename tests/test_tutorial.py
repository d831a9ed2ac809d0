"""The tutorial runs end to end as documented (so that it cannot drift from the package)."""

from __future__ import annotations

import subprocess
import sys

import scalex_scvi as sx

from scalex_testing import REPO_ROOT


def test_online_atlas_tutorial_runs(tmp_path):
    script = REPO_ROOT / "tutorials" / "online_atlas.py"
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "macro-F1" in done.stdout and "called Unknown" in done.stdout
    for name in ("tutorial_projection.png", "tutorial_markers.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    atlas = sx.Atlas.load(tmp_path / "pbmc_atlas")
    assert atlas.n_obs == 1200  # 910 reference cells and the 290 mapped ones
    assert set(atlas.adata.obs["source"]) == {"reference", "3pv1"}
