"""CSV, markdown summary and plots of a paper comparison.

Example:

```python
from keras_medyate.comparison import report
rows = report.read_csv("results/paper_comparison.csv")
print(report.summary_markdown(rows))
report.plot_accuracy_vs_budget(rows, "results/accuracy_vs_budget.png")
```
"""

import collections
import csv
import json
import math
import os

import numpy as np

from keras_medyate.comparison.runner import BUDGET_FREE, CSV_COLUMNS

NUMERIC = {"budget_units", "seed", "top1", "epochs", "train_seconds", "peak_memory_mb",
           "update_memory_kb", "epoch_seconds", "first_epoch_seconds",
           "resample_seconds_per_epoch", "explored",
           "search_space_layers", "channels_per_epoch", "full_memory_kb", "resolution",
           "train_images", "test_images", "learning_rate", "augment", "clipnorm",
           "warmup_epochs", "probe_l2", "probe_seconds"}


def run_key(row):
    """What identifies a run (for resuming): model, dataset, method, budget, seed."""
    return (row["model"], row["dataset"], row["method"], int(row["budget_units"]), int(row["seed"]))


def read_csv(path):
    """Rows of a comparison CSV (numbers parsed), or [] if the file is absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in NUMERIC & set(row):
            row[key] = float(row[key]) if row[key] not in ("", None) else math.nan
    return rows


def append_csv(path, row):
    """Appends one row, writing the header first if the file is new."""
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in CSV_COLUMNS})


def _groups(rows, keys):
    groups = collections.OrderedDict()
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _mean_std(values):
    values = np.asarray(values, np.float64)
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return values.mean(), std


def _paired_t(differences):
    """Two-sided paired t-test p-value (scipy if present), or NaN."""
    differences = np.asarray(differences, np.float64)
    if differences.size < 2 or np.allclose(differences.std(ddof=1), 0):
        return math.nan
    try:
        from scipy import stats  # noqa: PLC0415
    except ImportError:
        return math.nan
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


#: Budgeted methods a device can run (the oracles read the full gradient).
DEPLOYABLE_BASELINES = ("trady", "lara_trady", "full_random", "static_random", "sparse_update")


def accuracy_table(rows):
    """Top-1 % (mean ± std over seeds) with one column per budget: a markdown table."""
    budgets = sorted({r["budget_units"] for r in rows if r["method"] not in BUDGET_FREE})
    lines = ["| method | " + " | ".join(f"{int(b):,}" for b in budgets) + " | seeds |",
             "|---|" + "---|" * (len(budgets) + 1)]
    for (method,), group in _groups(rows, ("method",)).items():
        if method in BUDGET_FREE:
            mean, std = _mean_std([r["top1"] for r in group])
            label = {"full": f"full ({int(group[0]['budget_units']):,} units)"}.get(method, method)
            cells = [f"{mean:.2f} ± {std:.2f} (any budget)"] + [""] * (len(budgets) - 1)
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(group)} |")
            continue
        by_budget = _groups(group, ("budget_units",))
        cells = []
        for budget in budgets:
            values = [r["top1"] for r in by_budget.get((budget,), [])]
            cells.append("" if not values else "{:.2f} ± {:.2f}".format(*_mean_std(values)))
        seeds = len({r["seed"] for r in group})
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seeds} |")
    return lines


def acceptance_lines(rows, reference="medyate"):
    """MeDyate against the bars of the recipe issue, per budget (means over seeds)."""
    def mean(method, budget=None):
        values = [r["top1"] for r in rows if r["method"] == method
                  and (budget is None or r["budget_units"] == budget)]
        return float(np.mean(values)) if values else math.nan

    budgets = sorted({r["budget_units"] for r in rows if r["method"] == reference})
    if not budgets:
        return []
    lines = [f"Bars for {reference} (means over seeds): best deployable baseline − 0.5, "
             "linear probe + 3, and at the smallest budget full fine-tuning − 3.", "",
             "| budget | " + reference + " | best deployable baseline | linear probe | full | "
             "≥ best − 0.5 | ≥ probe + 3 | ≥ full − 3 |", "|---|---|---|---|---|---|---|---|"]
    probe, full = mean("linear_probe"), mean("full")
    for index, budget in enumerate(budgets):
        ours = mean(reference, budget)
        baselines = {m: mean(m, budget) for m in DEPLOYABLE_BASELINES}
        baselines = {m: v for m, v in baselines.items() if not math.isnan(v)}
        best = max(baselines.items(), key=lambda item: item[1]) if baselines else ("–", math.nan)

        def verdict(ok, value):
            return "n/a" if math.isnan(value) else ("yes" if ok else "**no**")

        full_check = verdict(ours >= full - 3, full) if index == 0 else ""
        lines.append(
            f"| {int(budget):,} | {ours:.2f} | {best[1]:.2f} ({best[0]}) | {probe:.2f} | "
            f"{full:.2f} | {verdict(ours >= best[1] - 0.5, best[1])} | "
            f"{verdict(ours >= probe + 3, probe)} | {full_check} |")
    return lines


def summary_markdown(rows, reference="medyate"):
    """Mean ± std per method × budget, speed/memory, and paired comparisons."""
    lines = []
    for (model, dataset), subset in _groups(rows, ("model", "dataset")).items():
        lines += [f"### {model} on {dataset}", "", "Top-1 % (mean ± std over seeds):", "",
                  *accuracy_table(subset), "", *acceptance_lines(subset, reference), "",
                  "Every run (memory, time; timing columns are only comparable within one "
                  "quiet run):", ""]
        full = [r for r in subset if r["method"] == "full"]
        full_epoch = np.mean([r["epoch_seconds"] for r in full]) if full else math.nan
        lines.append("| method | budget (units) | top-1 % (mean ± std) | runs | update memory KB "
                     "| TF peak MB | epoch s (× full) | resample s/epoch | explored |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for (method, budget), group in sorted(
                _groups(subset, ("method", "budget_units")).items(),
                key=lambda item: (item[0][1], item[0][0])):
            mean, std = _mean_std([r["top1"] for r in group])
            epoch = np.mean([r["epoch_seconds"] for r in group])
            ratio = f"{epoch / full_epoch:.2f}" if full else "–"
            lines.append(
                f"| {method} | {int(budget):,} | {mean:.2f} ± {std:.2f} | {len(group)} | "
                f"{np.mean([r['update_memory_kb'] for r in group]):.1f} | "
                f"{np.mean([r['peak_memory_mb'] for r in group]):.1f} | {epoch:.2f} ({ratio}) | "
                f"{np.mean([r['resample_seconds_per_epoch'] for r in group]):.4f} | "
                f"{100 * np.mean([r['explored'] for r in group]):.0f} % |")
        lines += ["", *paired_lines(subset, reference), ""]
    return "\n".join(lines)


def paired_lines(rows, reference="medyate"):
    """`reference` minus each other method over the same (budget, seed) pairs."""
    ours = {(r["budget_units"], r["seed"]): r["top1"] for r in rows if r["method"] == reference}
    if not ours:
        return []
    lines = [f"Paired comparison: {reference} minus baseline, same budget and seed "
             "(positive = {reference} better; p from a two-sided paired t-test).".format(
                 reference=reference), "",
             "| baseline | pairs | mean difference (pts) | std | wins / ties / losses | p |",
             "|---|---|---|---|---|---|"]
    for method, group in _groups(rows, ("method",)).items():
        method = method[0]
        if method == reference:
            continue
        if method in BUDGET_FREE:
            seeds = {r["seed"]: r["top1"] for r in group}
            pairs = [(v, seeds[s]) for (b, s), v in ours.items() if s in seeds]
        else:
            theirs = {(r["budget_units"], r["seed"]): r["top1"] for r in group}
            pairs = [(v, theirs[k]) for k, v in ours.items() if k in theirs]
        if not pairs:
            continue
        diff = np.array([a - b for a, b in pairs])
        wins, ties = int((diff > 0).sum()), int((diff == 0).sum())
        p = _paired_t(diff)
        lines.append(f"| {method} | {len(diff)} | {diff.mean():+.2f} | "
                     f"{diff.std(ddof=1) if diff.size > 1 else 0:.2f} | "
                     f"{wins} / {ties} / {len(diff) - wins - ties} | "
                     f"{'n/a' if math.isnan(p) else f'{p:.3f}'} |")
    return lines


def plot_accuracy_vs_budget(rows, path):
    """Top-1 vs budget per method (mean ± std over seeds), one panel per dataset.

    Saves the figure to `path` and returns it (a `matplotlib.figure.Figure`,
    independent of pyplot, so notebooks keep their backend).
    """
    from matplotlib.figure import Figure

    panels = _groups(rows, ("model", "dataset"))
    fig = Figure(figsize=(6 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, ((model, dataset), subset) in zip(axes[0], panels.items()):
        budgets = sorted({r["budget_units"] for r in subset
                          if r["method"] not in BUDGET_FREE})
        for method, group in _groups(subset, ("method",)).items():
            method = method[0]
            by_budget = _groups(group, ("budget_units",))
            if method in BUDGET_FREE:
                mean, std = _mean_std([r["top1"] for r in group])
                style = {"full": ("--", "gray"), "classifier": (":", "black")}.get(
                    method, ("-.", "firebrick"))
                ax.axhline(mean, linestyle=style[0], color=style[1],
                           label=f"{method} ({mean:.1f} %)")
                continue
            xs = sorted(b for (b,) in by_budget)
            stats = [_mean_std([r["top1"] for r in by_budget[(b,)]]) for b in xs]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                        capsize=3, label=method, linewidth=2.5 if method == "medyate" else 1.2)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{int(b):,}\n({b * 4 / 1024:.0f} KB)" for b in budgets])
        ax.set_xlabel("memory budget, units (KB at 4 B/unit)")
        ax.set_ylabel("top-1 test accuracy (%)")
        ax.set_title(f"{model} on {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_selection_heatmap(selection, path, title):
    """Fraction of each layer's input channels selected, per epoch.

    Args:
        selection: dict with `layers` (names), `num_channels` (per layer) and
            `epochs` (list of {layer: [indices]}), as written by
            `selection_record`.
    """
    from matplotlib.figure import Figure

    layers = selection["layers"]
    counts = np.array(selection["num_channels"], np.float64)
    grid = np.array([[len(epoch.get(name, [])) for name in layers]
                     for epoch in selection["epochs"]]) / counts
    fig = Figure(figsize=(1.2 + 0.35 * len(selection["epochs"]), 1.5 + 0.25 * len(layers)))
    ax = fig.subplots()
    image = ax.imshow(grid.T, aspect="auto", cmap="viridis", vmin=0)
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels(layers, fontsize=7)
    ax.set_xticks(range(len(selection["epochs"])))
    ax.set_xticklabels(range(1, len(selection["epochs"]) + 1))
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="fraction of input channels trained")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def selection_record(resampler):
    """A JSON-serializable per-epoch selection of one run (for the heatmap)."""
    plan = resampler.plan
    return {
        "layers": list(plan.layers),
        "num_channels": [plan.layer_info(n).num_channels for n in plan.layers],
        "epochs": [{k: v.tolist() for k, v in h.channels.items()}
                   for _, h in sorted(resampler.history.items())],
        "cost_units": [h.cost_units for _, h in sorted(resampler.history.items())],
    }


def plot_layer_ranking(ranking, plans, path, title):
    """Cumulated LaRa per layer (topological order), marking each budget's top-K."""
    import matplotlib
    from matplotlib.figure import Figure

    names = ranking.layer_names
    scores = np.array([ranking.scores["lara"][n] for n in names])
    fig = Figure(figsize=(max(8, 0.22 * len(names)), 4))
    ax = fig.subplots()
    ax.bar(range(len(names)), scores, color="lightgray", label="not in a search space")
    for index, (budget, plan) in enumerate(sorted(plans.items(), reverse=True)):
        chosen = [i for i, n in enumerate(names) if n in set(plan.layers)]
        ax.bar(chosen, scores[chosen], color=matplotlib.colormaps["viridis"](0.25 + 0.3 * index),
               label=f"top-{len(chosen)} for {int(budget):,} units")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("cumulated LaRa (‖dW‖ / layer memory)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)
