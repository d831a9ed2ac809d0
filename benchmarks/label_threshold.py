"""Choice of the "Unknown" rule of label transfer, on the projection benchmark's latents.

Reads the SCALEX reference and query embeddings that ``projection.py`` caches
(``benchmarks/.cache/projection/*SCALEX_(this_package).npz``) and sweeps the two rules of
:class:`scalex_scvi.tl.KNNLabelTransfer`: the uncertainty threshold (neighbours disagree) and the
distance quantile (the cell lies farther from its neighbours than almost every reference cell
does). For every pair it reports, per split and on average:

- macro-F1 over query cells of types the reference has ("Unknown" counts as wrong),
- ``unknown_rate_known``: such cells wrongly called "Unknown",
- ``unknown_rate_novel``: query cells of types the reference lacks called "Unknown".

The chosen default maximises the mean macro-F1 over the splits plus the mean
``unknown_rate_novel`` over the splits that hold novel types (both weighted equally), among the
settings that call at most 5 % of the cells of known types "Unknown" on average.
Writes benchmarks/results/label_threshold.{md,csv,png}.

    python benchmarks/label_threshold.py
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, provenance
from projection import CACHE

mpl.use("Agg")
import matplotlib.pyplot as plt

UNCERTAINTY = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
QUANTILE = (0.9, 0.95, 0.99, 0.995, 0.999, None)
MAX_KNOWN_LOST = 0.05  # at most 5 % of the cells of known types called "Unknown" (mean)


def sweep(path) -> pd.DataFrame:
    data = np.load(path, allow_pickle=True)
    ref_labels, query_labels = data["ref_labels"], data["query_labels"]
    novel = ~pd.Series(query_labels).isin(set(ref_labels)).to_numpy()
    rows = []
    for quantile in QUANTILE:
        base = sx.tl.KNNLabelTransfer(uncertainty_threshold=1.0, distance_quantile=quantile)
        base.fit(data["ref_latent"], ref_labels)
        predicted = base.predict(data["query_latent"])
        far = predicted["mean_distance"].to_numpy() > base.distance_cutoff_
        for threshold in UNCERTAINTY:
            unknown = far | (predicted["uncertainty"].to_numpy() > threshold)
            label = np.where(unknown, sx.tl.UNKNOWN, predicted["best_label"].to_numpy())
            scores = sx.tl.label_transfer_scores(
                query_labels, label, reference_labels=np.unique(ref_labels)
            )
            rows.append(
                {
                    "uncertainty_threshold": threshold,
                    "distance_quantile": "off" if quantile is None else quantile,
                    "macro_f1": scores["macro_f1"],
                    "unknown_rate_known": float(unknown[~novel].mean()),
                    "unknown_rate_novel": float(unknown[novel].mean()) if novel.any() else np.nan,
                    "n_novel": int(novel.sum()),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    files = sorted(CACHE.glob("*__SCALEX_(this_package).npz"))
    if not files:
        raise SystemExit(f"No cached latents in {CACHE}; run projection.py first.")
    table = pd.concat(
        [sweep(path).assign(split=path.name.split("__")[0]) for path in files], ignore_index=True
    )
    keys = ["uncertainty_threshold", "distance_quantile"]
    summary = table.groupby(keys, sort=False).agg(
        macro_f1=("macro_f1", "mean"),
        unknown_rate_known=("unknown_rate_known", "mean"),
        unknown_rate_novel=("unknown_rate_novel", "mean"),  # NaN (no novel type) skipped
    )
    summary["score"] = summary["macro_f1"] + summary["unknown_rate_novel"].fillna(0)
    summary = summary.reset_index()
    admissible = summary[summary["unknown_rate_known"] <= MAX_KNOWN_LOST]
    best = admissible.loc[admissible["score"].idxmax()]
    table.to_csv(RESULTS / "label_threshold.csv", index=False)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for quantile, group in summary.groupby("distance_quantile", sort=False):
        axes[0].plot(group["uncertainty_threshold"], group["macro_f1"], marker="o", label=quantile)
        axes[1].plot(
            group["unknown_rate_known"], group["unknown_rate_novel"], marker="o", label=quantile
        )
    axes[0].set(xlabel="uncertainty threshold", ylabel="mean macro-F1 (known types)")
    axes[1].set(xlabel="known-type cells called Unknown", ylabel="novel-type cells called Unknown")
    axes[1].legend(title="distance quantile", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "label_threshold.png", dpi=100)
    plt.close(fig)

    per_split = table.pivot_table(index=keys, columns="split", values="macro_f1", sort=False)
    with open(RESULTS / "label_threshold.md", "w") as fh:
        fh.write("# Choice of the Unknown rule (label transfer)\n\n")
        fh.write(
            f"SCALEX latents of {len(files)} projection splits "
            f"({', '.join(p.name.split('__')[0] for p in files)}). "
            "Score = mean macro-F1 (known types, Unknown counts as wrong) + mean rate of "
            "novel-type cells called Unknown (splits with novel types), among the settings "
            "calling at most 5 % of known-type cells Unknown (mean over splits).\n\n"
        )
        fh.write(
            f"**Best: uncertainty_threshold = {best['uncertainty_threshold']}, "
            f"distance_quantile = {best['distance_quantile']}** (score {best['score']:.4f}, "
            f"macro-F1 {best['macro_f1']:.4f}, known called Unknown "
            f"{best['unknown_rate_known']:.4f}, novel called Unknown "
            f"{best['unknown_rate_novel']:.4f}).\n\n"
        )
        fh.write(summary.sort_values("score", ascending=False).round(4).to_markdown(index=False))
        fh.write("\n\nmacro-F1 per split:\n\n" + per_split.round(4).to_markdown() + "\n\n")
        fh.write("![sweep](label_threshold.png)\n\n")
        fh.write(provenance())
    print(summary.sort_values("score", ascending=False).head(10).to_string())


if __name__ == "__main__":
    main()
