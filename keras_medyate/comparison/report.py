"""CSV, markdown summary and plots of a paper comparison.

Every accuracy cell states how many runs it holds (`n=3`); a cell of one run
is labelled as such, with no spread. Paired tests pair only runs that share a
seed and a budget. Rows of the LiteRT runtime stand next to the Keras rows of
the same method, with the probe and full fine-tuning, and the per-epoch
accuracy curves (`epoch_top1`) are tabulated.

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

from keras_medyate.comparison.settings import BUDGET_FREE, CSV_COLUMNS, PAPER_CROP_SCALE

NUMERIC = {"budget_units", "seed", "top1", "epochs", "train_seconds", "peak_memory_mb",
           "update_memory_kb", "epoch_seconds", "first_epoch_seconds",
           "resample_seconds_per_epoch", "explored",
           "search_space_layers", "channels_per_epoch", "full_memory_kb", "resolution",
           "train_images", "test_images", "learning_rate", "augment", "clipnorm",
           "warmup_epochs", "probe_l2", "probe_seconds", "retries", "threads", "batch_size",
           "epoch_eval_seconds"}
#: Values of columns older CSVs lack (written before the column existed).
MISSING_DEFAULTS = {"runtime": "keras", "evaluated_on": "test", "retries": "0",
                    "epoch_top1": "", "crop_scale": ""}
RUNTIME_LABELS = {"keras": "Keras", "litert": "LiteRT"}


def run_key(row):
    """What identifies a run (for resuming): model, dataset, method, budget, seed, runtime."""
    return (row["model"], row["dataset"], row["method"], int(row["budget_units"]),
            int(row["seed"]), row.get("runtime") or "keras")


def read_csv(path):
    """Rows of a comparison CSV (numbers parsed, `epoch_top1` a list of floats), or []."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [normalize(row) for row in csv.DictReader(f)]


def missing_value(row, column):
    """The value of `column` (one of `MISSING_DEFAULTS`) for a row written
    before the column existed."""
    if column == "crop_scale" and str(row.get("augment")) not in ("", "0", "0.0", "None"):
        return f"{PAPER_CROP_SCALE:g}"  # every augmented run used the authors' crop
    return MISSING_DEFAULTS[column]


def augmentation_text(row):
    """How a run's training images were augmented, in words: 'no', 'flip',
    or 'crop 0.08–1 + flip'."""
    if not row["augment"] or (isinstance(row["augment"], float) and math.isnan(row["augment"])):
        return "no"
    scale = row["crop_scale"]
    return "flip" if scale == "none" else f"crop {scale}–1 + flip"


def normalize(row):
    """A row as `read_csv` gives it (numbers parsed, `epoch_top1` a list of floats,
    defaults for columns older CSVs lack), from a CSV row or `run_one`'s dict."""
    row = dict(row)
    for key in MISSING_DEFAULTS:
        if row.get(key) is None or (row.get(key) == "" and MISSING_DEFAULTS[key] != ""):
            row[key] = missing_value(row, key)
    for key in NUMERIC & set(row):
        value = row[key]
        row[key] = float(value) if value not in ("", None) else math.nan
    top1 = row["epoch_top1"]
    if isinstance(top1, str):
        row["epoch_top1"] = [float(v) if v else math.nan for v in top1.split(";")] if top1 else []
    return row


def check_csv(path, evaluated_on):
    """Raises ValueError unless new rows can join the CSV at `path` (absent is fine).

    Rows of an older version (other columns: measured under another protocol)
    or evaluated on another split must not be mixed with new ones.
    """
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != CSV_COLUMNS and _only_defaulted_columns_missing(header):
        upgrade_csv(path)
        header = list(CSV_COLUMNS)
    if tuple(header) != CSV_COLUMNS:
        missing = [c for c in CSV_COLUMNS if c not in header]
        raise ValueError(
            f"{path} was written by another version of the comparison (columns "
            f"{', '.join(missing) or 'in another order'} differ): its runs were measured under "
            "another protocol and cannot be resumed. Move it away or choose another --out.")
    splits = {r.get("evaluated_on") for r in read_csv(path)}
    if splits - {evaluated_on}:
        raise ValueError(
            f"{path} holds runs evaluated on {', '.join(sorted(splits))}, not "
            f"{evaluated_on}: choose another --out for --eval_on={evaluated_on}.")


def _only_defaulted_columns_missing(header):
    """Whether `header` is `CSV_COLUMNS` without some columns that have a
    `MISSING_DEFAULTS` value (an older CSV of the same protocol)."""
    missing = [c for c in CSV_COLUMNS if c not in header]
    return (bool(header) and all(c in MISSING_DEFAULTS for c in missing)
            and list(header) == [c for c in CSV_COLUMNS if c in header])


def upgrade_csv(path):
    """Rewrites an older CSV with the current columns, filling the ones it
    lacks as `normalize` reads them (its values are otherwise unchanged)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] if c in row else missing_value(row, c)
                             for c in CSV_COLUMNS})


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


def cell(values, digits=2):
    """`mean ± std (n=N)`, or `value (1 run)` for a single run, or '' for none."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 run)"
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


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


def method_label(method, runtime="keras"):
    """`medyate` for a Keras run, `medyate (LiteRT)` for another runtime."""
    return method if runtime == "keras" else f"{method} ({RUNTIME_LABELS.get(runtime, runtime)})"


def _keras(rows):
    return [r for r in rows if r["runtime"] == "keras"]


def _split_name(rows):
    splits = sorted({r["evaluated_on"] for r in rows})
    return "/".join(splits) or "test"


def accuracy_table(rows):
    """Top-1 % per method (and runtime) × budget: mean ± std and run count per cell."""
    budgets = sorted({r["budget_units"] for r in rows if r["method"] not in BUDGET_FREE})
    lines = ["| method | " + " | ".join(f"{int(b):,}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for (method, runtime), group in _groups(rows, ("method", "runtime")).items():
        label = method_label(method, runtime)
        if method in BUDGET_FREE:
            if method == "full":
                label += f" ({int(group[0]['budget_units']):,} units)"
            cells = [cell([r["top1"] for r in group]) + " (any budget)"] + [""] * (len(budgets) - 1)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            continue
        by_budget = _groups(group, ("budget_units",))
        cells = [cell([r["top1"] for r in by_budget.get((b,), [])]) for b in budgets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def acceptance_lines(rows, reference="medyate"):
    """MeDyate (Keras) against the bars of the recipe issue, per budget (means over seeds)."""
    rows = _keras(rows)

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

        def number(value):
            return "–" if math.isnan(value) else f"{value:.2f}"

        full_check = verdict(ours >= full - 3, full) if index == 0 else ""
        lines.append(
            f"| {int(budget):,} | {ours:.2f} | {number(best[1])} ({best[0]}) | {number(probe)} | "
            f"{number(full)} | {verdict(ours >= best[1] - 0.5, best[1])} | "
            f"{verdict(ours >= probe + 3, probe)} | {full_check} |")
    return lines


def runtime_lines(rows, reference="medyate"):
    """Keras vs LiteRT side by side, per budget, with the probe and full fine-tuning."""
    others = sorted({r["runtime"] for r in rows if r["method"] == reference} - {"keras"})
    if not others:
        return []
    lines = [f"{reference} trained in Keras and on the exported LiteRT file (same head, plan, "
             "seed, data order, recipe, epochs); difference paired by seed; seconds per epoch "
             "of training (evaluation excluded).", ""]
    header = "| budget | Keras | " + " | ".join(RUNTIME_LABELS.get(o, o) for o in others)
    header += " | " + " | ".join(f"{RUNTIME_LABELS.get(o, o)} − Keras (pairs)" for o in others)
    header += " | linear probe | full | s/epoch Keras | " + " | ".join(
        f"s/epoch {RUNTIME_LABELS.get(o, o)}" for o in others) + " |"
    columns = 4 + 3 * len(others) + 1
    lines += [header, "|---" * columns + "|"]
    probe = [r["top1"] for r in rows if r["method"] == "linear_probe"]
    full = [r["top1"] for r in _keras(rows) if r["method"] == "full"]
    budgets = sorted({r["budget_units"] for r in rows if r["method"] == reference})
    for budget in budgets:
        runs = {runtime: {r["seed"]: r for r in rows if r["method"] == reference
                          and r["runtime"] == runtime and r["budget_units"] == budget}
                for runtime in ["keras", *others]}
        keras_runs = runs["keras"]
        differences = []
        for other in others:
            diff = [runs[other][s]["top1"] - keras_runs[s]["top1"]
                    for s in sorted(set(runs[other]) & set(keras_runs))]
            differences.append("" if not diff else
                               f"{np.mean(diff):+.2f} ({len(diff)})")
        speeds = [cell([r["epoch_seconds"] for r in runs[rt].values()])
                  for rt in ["keras", *others]]
        lines.append(
            f"| {int(budget):,} | {cell([r['top1'] for r in keras_runs.values()])} | "
            + " | ".join(cell([r["top1"] for r in runs[o].values()]) for o in others) + " | "
            + " | ".join(differences) + f" | {cell(probe)} | {cell(full)} | "
            + " | ".join(speeds) + " |")
    return lines


def mean_epoch_curve(rows):
    """Mean of `epoch_top1` over `rows`, epoch by epoch (NaN and missing epochs skipped;
    NaN where no run has that epoch)."""
    length = max((len(r["epoch_top1"]) for r in rows), default=0)
    curve = []
    for epoch in range(length):
        points = [r["epoch_top1"][epoch] for r in rows if len(r["epoch_top1"]) > epoch
                  and not math.isnan(r["epoch_top1"][epoch])]
        curve.append(float(np.mean(points)) if points else math.nan)
    return curve


def epochs_to_within(curve, points=1.0):
    """The first epoch (1-based) whose value is within `points` of the curve's
    best, or None for an empty (all-NaN) curve.

    >>> epochs_to_within([60.0, 70.0, 79.5, 80.0, 79.0])
    3
    """
    values = np.asarray(curve, np.float64)
    if not values.size or np.all(np.isnan(values)):
        return None
    best = np.nanmax(values)
    return int(np.flatnonzero(values >= best - points)[0]) + 1


def epoch_curve_lines(rows):
    """Mean top-1 after every epoch per method, runtime and budget (`epoch_top1`)."""
    curves = [r for r in rows if r["epoch_top1"]]
    if not curves:
        return []
    epochs = max(len(r["epoch_top1"]) for r in curves)
    split = _split_name(curves)
    lines = [f"Top-1 % on the {split} images after every epoch (mean over runs; the last "
             "epoch is the run's top-1):", "",
             "| method | budget | runs | " + " | ".join(str(e + 1) for e in range(epochs))
             + " | within 1 point of its best from epoch |",
             "|---|---|---|" + "---|" * epochs + "---|"]
    for (method, runtime, budget), group in sorted(
            _groups(curves, ("method", "runtime", "budget_units")).items(),
            key=lambda item: (item[0][2], item[0][0], item[0][1])):
        curve = mean_epoch_curve(group) + [math.nan] * epochs
        values = ["" if math.isnan(v) else f"{v:.1f}" for v in curve[:epochs]]
        lines.append(f"| {method_label(method, runtime)} | {int(budget):,} | {len(group)} | "
                     + " | ".join(values) + f" | {epochs_to_within(curve[:epochs]) or ''} |")
    cost = [r["epoch_eval_seconds"] / max(len(r["epoch_top1"]), 1) for r in curves
            if not math.isnan(r["epoch_eval_seconds"])]
    images = sorted({int(r["test_images"]) for r in curves})
    if cost:
        lines += ["", f"Evaluation cost: {np.mean(cost):.2f} s per epoch on average "
                  f"({', '.join(f'{i:,}' for i in images)} {split} images), left out of "
                  "`train_seconds` and the seconds per epoch (`epoch_eval_seconds` in the CSV)."]
    return lines


def retry_lines(rows):
    """The runs whose loss diverged and were restarted at a lower learning rate."""
    retried = [r for r in rows if r["retries"] and not math.isnan(r["retries"])]
    if not retried:
        return ["No run diverged (no retry)."]
    lines = [f"{len(retried)} run(s) diverged and were restarted at half the learning rate "
             "(their row holds the last try):", ""]
    for r in retried:
        lines.append(f"- {method_label(r['method'], r['runtime'])}, budget "
                     f"{int(r['budget_units']):,}, seed {int(r['seed'])}: {int(r['retries'])} "
                     f"retr{'y' if r['retries'] == 1 else 'ies'}, learning rate "
                     f"{r['learning_rate']:g}")
    return lines


def summary_markdown(rows, reference="medyate"):
    """Per model and dataset: accuracy cells, bars, runtimes, curves, speed/memory, pairs.

    `rows`: from `read_csv`, or the dicts `runner.run_one` returns.
    """
    rows = [normalize(r) for r in rows]
    lines = []
    for (model, dataset), subset in _groups(rows, ("model", "dataset")).items():
        split = _split_name(subset)
        seeds = sorted({int(r["seed"]) for r in subset})
        lines += [f"### {model} on {dataset}", "",
                  f"Top-1 % on the {split} images: mean ± std over the runs of each cell "
                  f"(n = runs; seeds {', '.join(map(str, seeds))}; a seed picks the training "
                  "images and their order for every method).", "",
                  *accuracy_table(subset), "", *acceptance_lines(subset, reference), "",
                  *runtime_lines(subset, reference), "", *epoch_curve_lines(subset), "",
                  *retry_lines(subset), "",
                  "Every cell (memory, time; timing columns are only comparable within one "
                  "quiet run):", ""]
        full = [r for r in subset if r["method"] == "full"]
        full_epoch = np.mean([r["epoch_seconds"] for r in full]) if full else math.nan
        lines.append("| method | budget (units) | top-1 % | update memory KB "
                     "| TF peak MB | epoch s (× full) | resample s/epoch | explored |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for (method, runtime, budget), group in sorted(
                _groups(subset, ("method", "runtime", "budget_units")).items(),
                key=lambda item: (item[0][2], item[0][0], item[0][1])):
            epoch = np.mean([r["epoch_seconds"] for r in group])
            ratio = f"{epoch / full_epoch:.2f}" if full else "–"
            peaks = [r["peak_memory_mb"] for r in group if not math.isnan(r["peak_memory_mb"])]
            lines.append(
                f"| {method_label(method, runtime)} | {int(budget):,} | "
                f"{cell([r['top1'] for r in group])} | "
                f"{np.mean([r['update_memory_kb'] for r in group]):.1f} | "
                f"{f'{np.mean(peaks):.1f}' if peaks else '–'} | {epoch:.2f} ({ratio}) | "
                f"{np.mean([r['resample_seconds_per_epoch'] for r in group]):.4f} | "
                f"{100 * np.mean([r['explored'] for r in group]):.0f} % |")
        lines += ["", *paired_lines(subset, reference), ""]
    return "\n".join(lines)


def summary_file_text(rows, quick=False):
    """The text of a comparison's `summary.md`: a title, what wrote it, and
    `summary_markdown` of `rows` (`quick`: the smoke-run warning first)."""
    text = ("# Paper comparison: summary\n\nGenerated by `benchmarks/paper_comparison.py` "
            "from `paper_comparison.csv`.\n\n")
    if quick:
        text += ("> **Smoke run (`--quick`)**: a few images per class at 32 px for 2 epochs. "
                 "It checks that every method runs; its accuracies mean nothing.\n\n")
    return text + summary_markdown(rows)


def paired_lines(rows, reference="medyate"):
    """`reference` minus each baseline, per budget, over runs sharing a seed (Keras runs)."""
    rows = _keras(rows)
    ours = {(r["budget_units"], r["seed"]): r["top1"] for r in rows if r["method"] == reference}
    if not ours:
        return []
    lines = [f"Paired comparison: {reference} minus baseline, per budget, over the runs that "
             f"share a seed (positive = {reference} better; p from a two-sided paired t-test; "
             "a pair is one seed, never one baseline run reused).", "",
             "| baseline | budget | pairs | mean difference (pts) | std | wins / ties / losses "
             "| p |", "|---|---|---|---|---|---|---|"]
    budgets = sorted({b for b, _ in ours})
    for (method,), group in _groups(rows, ("method",)).items():
        if method == reference:
            continue
        for budget in budgets:
            if method in BUDGET_FREE:
                theirs = {r["seed"]: r["top1"] for r in group}
            else:
                theirs = {r["seed"]: r["top1"] for r in group if r["budget_units"] == budget}
            pairs = [(value, theirs[seed]) for (b, seed), value in sorted(ours.items())
                     if b == budget and seed in theirs]
            if not pairs:
                continue
            diff = np.array([a - b for a, b in pairs])
            wins, ties = int((diff > 0).sum()), int((diff == 0).sum())
            p = _paired_t(diff)
            lines.append(f"| {method} | {int(budget):,} | {len(diff)} | {diff.mean():+.2f} | "
                         f"{f'{diff.std(ddof=1):.2f}' if diff.size > 1 else '(1 pair)'} | "
                         f"{wins} / {ties} / {len(diff) - wins - ties} | "
                         f"{'n/a' if math.isnan(p) else f'{p:.3f}'} |")
    return lines


def plot_accuracy_vs_budget(rows, path):
    """Top-1 vs budget per method and runtime (mean ± std over seeds), one panel per dataset.

    Saves the figure to `path` and returns it (a `matplotlib.figure.Figure`,
    independent of pyplot, so notebooks keep their backend).
    """
    from matplotlib.figure import Figure

    rows = [normalize(r) for r in rows]
    panels = _groups(rows, ("model", "dataset"))
    fig = Figure(figsize=(6 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, ((model, dataset), subset) in zip(axes[0], panels.items()):
        budgets = sorted({r["budget_units"] for r in subset
                          if r["method"] not in BUDGET_FREE})
        for (method, runtime), group in _groups(subset, ("method", "runtime")).items():
            label = method_label(method, runtime)
            by_budget = _groups(group, ("budget_units",))
            if method in BUDGET_FREE:
                mean, std = _mean_std([r["top1"] for r in group])
                style = {"full": ("--", "gray"), "classifier": (":", "black")}.get(
                    method, ("-.", "firebrick"))
                ax.axhline(mean, linestyle=style[0], color=style[1],
                           label=f"{label} ({mean:.1f} %)")
                continue
            xs = sorted(b for (b,) in by_budget)
            stats = [_mean_std([r["top1"] for r in by_budget[(b,)]]) for b in xs]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                        capsize=3, label=label, linewidth=2.5 if method == "medyate" else 1.2,
                        linestyle="-" if runtime == "keras" else "--")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{int(b):,}\n({b * 4 / 1024:.0f} KB)" for b in budgets])
        ax.set_xlabel("memory budget, units (KB at 4 B/unit)")
        ax.set_ylabel(f"top-1 {_split_name(subset)} accuracy (%)")
        ax.set_title(f"{model} on {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_epoch_curves(rows, path):
    """Mean top-1 after every epoch, per method/runtime; one panel per dataset and budget."""
    from matplotlib.figure import Figure

    rows = [normalize(r) for r in rows]
    curves = [r for r in rows if r["epoch_top1"]]
    budgets = sorted({r["budget_units"] for r in curves if r["method"] not in BUDGET_FREE}) or [0]
    panels = list(_groups(curves, ("model", "dataset")).items())
    fig = Figure(figsize=(4.5 * len(budgets), 3.6 * len(panels)))
    axes = fig.subplots(len(panels), len(budgets), squeeze=False)
    for row_axes, ((model, dataset), subset) in zip(axes, panels):
        for ax, budget in zip(row_axes, budgets):
            for (method, runtime), group in _groups(subset, ("method", "runtime")).items():
                if method not in BUDGET_FREE:
                    group = [r for r in group if r["budget_units"] == budget]
                if not group:
                    continue
                mean = mean_epoch_curve(group)
                ax.plot(range(1, len(mean) + 1), mean, marker=".",
                        linestyle="-" if runtime == "keras" else "--",
                        label=method_label(method, runtime))
            probe = [r["top1"] for r in rows if r["method"] == "linear_probe"
                     and (r["model"], r["dataset"]) == (model, dataset)]
            if probe:
                ax.axhline(float(np.mean(probe)), color="grey", linestyle=":",
                           label=f"linear probe ({cell(probe, 1)})")
            ax.set_title(f"{model} on {dataset}, {int(budget):,} units", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"top-1 {_split_name(subset)} (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
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
