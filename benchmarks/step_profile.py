"""Where a training step's time goes, and how much faster a step could be.

For each panel dataset (its panel preprocessing, ``scaling.DATASETS``), one torch thread as in
every panel run, ``--repeats`` times, the three ways alternating, ``--iterations`` each:

- ``model.train()``: the package's path (Lightning, scvi-tools' data loader), default precision;
- ``model.train(precision="bf16-mixed")``: Lightning's CPU autocast, bfloat16 matrix products;
- a bare PyTorch loop over the same module and optimiser (fused Adam, the package's defaults):
  mini-batches of 64 cells drawn without replacement from a dense tensor, forward, backward,
  step; no Lightning, no data loader.

Then ``torch.profiler`` over ``--profile-steps`` steps of the bare loop: each operator group's
share of the step's CPU time. Writes benchmarks/results/step_profile.{md,csv}.

    python benchmarks/step_profile.py [--iterations 1000] [--repeats 2] [--profile-steps 200]
    python benchmarks/step_profile.py --report  # rewrite the report from the CSV (and notes)
"""

from __future__ import annotations

import argparse
import inspect
import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
import torch
from scvi import REGISTRY_KEYS
from torch.profiler import ProfilerActivity, profile

import scalex_scvi as sx
from scalex_scvi.model._model import DEFAULT_WEIGHT_DECAY
from scalex_scvi.model._optim import adam_creator

from _common import RESULTS, notes_and_provenance, read
from scaling import DATASETS
from speed import ours

WAYS = ("model.train()", 'model.train(precision="bf16-mixed")', "bare PyTorch loop")
BATCH_SIZE = 64
LR = inspect.signature(sx.SCALEX.train).parameters["lr"].default  # the package's default
# operator groups of the profile, by the names torch.profiler gives them
GROUPS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
    "Adam": ("aten::_fused_adam_", "Optimizer.step#Adam.step"),
}


def new_model(prepared) -> sx.SCALEX:
    scvi.settings.seed = 0
    adata = prepared.copy()
    sx.SCALEX.setup_anndata(adata, batch_key="batch")
    return sx.SCALEX(adata)


class BareLoop:
    """The package's module and optimiser stepped by hand over a dense copy of the data."""

    def __init__(self, prepared):
        model = new_model(prepared)
        self.module = model.module.train()
        x = model.adata.X
        self.x = torch.as_tensor(
            x.toarray() if sp.issparse(x) else np.asarray(x), dtype=torch.float32
        )
        batch = model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
        self.batch = torch.as_tensor(np.asarray(batch), dtype=torch.long).reshape(-1, 1)
        self.optimizer = adam_creator(lr=LR, weight_decay=DEFAULT_WEIGHT_DECAY, eps=1e-8)(
            self.module.parameters()
        )
        self.generator = torch.Generator().manual_seed(0)
        self.order = torch.empty(0, dtype=torch.long)

    def _next_cells(self) -> torch.Tensor:
        if len(self.order) < BATCH_SIZE:
            self.order = torch.randperm(len(self.x), generator=self.generator)
        cells, self.order = self.order[:BATCH_SIZE], self.order[BATCH_SIZE:]
        return cells

    def step(self) -> None:
        cells = self._next_cells()
        tensors = {REGISTRY_KEYS.X_KEY: self.x[cells], REGISTRY_KEYS.BATCH_KEY: self.batch[cells]}
        _, _, losses = self.module(tensors, loss_kwargs={"kl_weight": 1.0})
        self.optimizer.zero_grad()
        losses.loss.backward()
        self.optimizer.step()

    def rate(self, iterations: int) -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            self.step()
        return iterations / (time.perf_counter() - start)

    def profile_shares(self, steps: int) -> dict[str, float]:
        """Share of the steps' CPU time (operators' self time) per group in ``GROUPS``."""
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                self.step()
        self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        total = sum(self_us.values())
        shares = {
            group: sum(self_us.get(name, 0.0) for name in names) / total
            for group, names in GROUPS.items()
        }
        shares["rest"] = 1.0 - sum(shares.values())
        return shares


def run_dataset(name: str, iterations: int, repeats: int, profile_steps: int) -> dict:
    file, min_features = DATASETS[name]
    prepared = sx.pp.preprocess(read(file), batch_key="batch", min_features=min_features)
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(repeats):
        rates[WAYS[0]].append(ours(prepared, iterations)["iterations_per_s"])
        rates[WAYS[1]].append(
            ours(prepared, iterations, precision="bf16-mixed")["iterations_per_s"]
        )
        rates[WAYS[2]].append(BareLoop(prepared).rate(iterations))
        print(name, {way: round(r[-1], 1) for way, r in rates.items()}, flush=True)
    shares = BareLoop(prepared).profile_shares(profile_steps)
    median = {way: float(np.median(r)) for way, r in rates.items()}
    return {
        "dataset": name,
        "cells": prepared.n_obs,
        "features": prepared.n_vars,
        "batches": prepared.obs["batch"].nunique(),
        **{f"{way} it/s": median[way] for way in WAYS},
        "bf16 / default": median[WAYS[1]] / median[WAYS[0]],
        "bare / model.train()": median[WAYS[2]] / median[WAYS[0]],
        **{f"share: {group}": share for group, share in shares.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--report",
        action="store_true",
        help="rewrite the report from the CSV, no runs (give the run's other options)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    if args.report:
        write_report(pd.read_csv(RESULTS / "step_profile.csv"), args)
        return
    table = pd.DataFrame(
        [run_dataset(n, args.iterations, args.repeats, args.profile_steps) for n in args.datasets]
    )
    table.to_csv(RESULTS / "step_profile.csv", index=False)
    write_report(table, args)
    print(table.to_string())


def write_report(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """step_profile.md: the table, then the notes (decision rule, reading) and provenance."""
    with open(RESULTS / "step_profile.md", "w") as fh:
        fh.write("# Where a training step's time goes\n\n")
        fh.write(
            f"Batch size {BATCH_SIZE}; {args.iterations} iterations per run, {args.repeats} runs "
            f"of each way, alternating; median iterations per second; {args.threads} torch "
            "thread(s). `model.train()` includes Lightning's set-up. Shares: operators' self "
            f"CPU time over {args.profile_steps} steps of the bare loop (torch.profiler).\n\n"
        )
        fh.write(table.to_markdown(index=False, floatfmt=".3g") + "\n\n")
        fh.write(notes_and_provenance(RESULTS, "step_profile"))


if __name__ == "__main__":
    main()
