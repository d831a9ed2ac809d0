"""The original SCALEX package (PyPI ``scalex`` 1.0.4) in its own virtual environment.

It runs on current numpy/torch only with three small patches, applied here to the installed
copy (never committed): ``np.Inf`` → ``np.inf`` (removed in numpy 2), ``torch.load(...,
weights_only=False)`` for its pickled config and state (torch >= 2.6 defaults to weights only),
and the missing ``from anndata import AnnData`` in ``function.py`` (projection with
``repeat=False``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-scalex"
PYTHON = VENV / "bin" / "python"
RUNNER = HERE / "_original_runner.py"
SPEC = "scalex==1.0.4"
TORCH_SPEC = "torch==2.13.0"


def ensure_venv() -> Path:
    """Create the venv with the patched original package when missing; return its python."""
    marker = VENV / ".patched"
    if marker.exists():
        return PYTHON
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, TORCH_SPEC], check=True)
    subprocess.run([*pip, SPEC, "leidenalg"], check=True)
    site = subprocess.run(
        [str(PYTHON), "-c", "import scalex, os; print(os.path.dirname(scalex.__file__))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    patch(Path(site))
    marker.write_text(SPEC + "\n")
    return PYTHON


def patch(package: Path) -> None:
    """Apply the three compatibility patches (idempotent)."""
    replacements = {
        "net/utils.py": [("np.Inf", "np.inf")],
        "net/vae.py": [
            (
                "torch.load(path, map_location=lambda storage, loc: storage)",
                "torch.load(path, map_location=lambda storage, loc: storage, weights_only=False)",
            ),
        ],
        "function.py": [
            (
                "torch.load(os.path.join(projection, 'checkpoint/config.pt'))",
                "torch.load(os.path.join(projection, 'checkpoint/config.pt'), weights_only=False)",
            ),
            ("\n# from anndata import AnnData", "\nfrom anndata import AnnData"),
        ],
    }
    for relative, pairs in replacements.items():
        path = package / relative
        text = path.read_text()
        for old, new in pairs:
            if new not in text:
                text = text.replace(old, new)
        path.write_text(text)
        # pip may install hash-based .pyc files that are not checked against the source
        for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            cached.unlink()


def run(task: dict) -> dict:
    """Run ``_original_runner.py`` in the original's venv with a JSON task; return its JSON."""
    python = ensure_venv()
    done = subprocess.run(
        [str(python), str(RUNNER), json.dumps(task)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the original package failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
