"""Regenerate the measured tables of benchmarks/RESULTS.md from the committed CSVs.

RESULTS.md holds blocks between two markers; this script rewrites each block's body from the
CSV it names, with the report code of `keras_medyate.comparison.report` (the same code that
writes each run's `summary.md`), so a table in RESULTS.md cannot drift from its CSV:

    <!-- generated: summary benchmarks/results/paper_comparison.csv -->
    ... (rewritten) ...
    <!-- end generated -->

Kinds:
- `summary PATH.csv`: `report.summary_markdown` of that CSV (every table of the comparison);
  the `summary.md` next to the CSV is rewritten (checked) too, so it holds the same tables.
- `recipe DIR`: one row per configuration of the recipe check (every `DIR/*/paper_comparison.csv`):
  method, budget, peak learning rate, augmentation, top-1 mean ± std over its runs, and the epoch
  at which the mean per-epoch curve peaks (`recipe_lines`).
- `papers PATH.csv[,PATH.csv...]`: one row per method (and recipe) of runs at or near the papers'
  scale, next to the papers' number for the same cell (`papers_lines`; issues 23 and 26).

Usage (from the repository root):

    python benchmarks/update_results.py            # rewrite benchmarks/RESULTS.md in place
    python benchmarks/update_results.py --check    # exit 1 if a block differs from its CSV
"""

import glob
import os
import re
import sys

import numpy as np

from absl import app
from absl import flags

from keras_medyate.comparison import report
from keras_medyate.comparison.settings import BUDGET_FREE

FLAGS = flags.FLAGS
flags.DEFINE_string("results", "benchmarks/RESULTS.md", "The markdown file whose blocks to rewrite.")
flags.DEFINE_bool("check", False, "Only compare: exit 1 if a block differs from what its CSV gives.")

BLOCK = re.compile(r"(<!-- generated: (\w+) (\S+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def epoch_text(curve, index):
    """'epoch (its top-1)' of the 0-based `index` of a per-epoch curve, e.g. '13 (81.80)'."""
    return f"{index + 1} ({curve[index]:.2f})"


def recipe_lines(directory):
    """Recipe-check table over every configuration CSV under `directory`.

    One row per (method, budget, peak learning rate, augmentation, training images, epochs):
    top-1 on the split the runs were evaluated on (mean ± std, run count), and the epoch where
    the mean per-epoch curve peaks next to its value at the last epoch (is the number of epochs
    enough?).
    """
    groups = {}
    for path in sorted(glob.glob(os.path.join(directory, "*", "paper_comparison.csv"))):
        for row in report.read_csv(path):
            key = (row["method"], int(row["budget_units"]), float(row["learning_rate"]),
                   report.augmentation_text(row), int(row["train_images"]),
                   int(row["epochs"]))
            groups.setdefault(key, []).append(row)
    if not groups:
        raise FileNotFoundError(f"No */paper_comparison.csv under {directory!r}: run "
                                "benchmarks/recipe/run.sh first.")
    setups = {(r["model"], r["dataset"], int(r["resolution"]), int(r["test_images"]))
              for rows in groups.values() for r in rows}
    if len(setups) > 1:
        raise ValueError(f"{directory!r} mixes runs of {len(setups)} (model, dataset, "
                         f"resolution, evaluation images) settings {sorted(setups)}, which one "
                         "table cannot tell apart: give each its own directory.")
    splits = sorted({r["evaluated_on"] for rows in groups.values() for r in rows})
    lines = [f"Top-1 % on the {'/'.join(splits)} images (mean ± std over n runs, one per seed).",
             "",
             "| method | budget (units) | peak lr | augment | training images | epochs | top-1 % "
             "| best epoch of the mean curve (its top-1) | last epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (method, budget, lr, augment, train_images, epochs), rows in sorted(groups.items()):
        mean_curve = report.mean_epoch_curve(rows)
        best = epoch_text(mean_curve, int(np.nanargmax(mean_curve))) if mean_curve else "–"
        last = epoch_text(mean_curve, len(mean_curve) - 1) if mean_curve else "–"
        budget_text = "any" if method in BUDGET_FREE else f"{budget:,}"
        lines.append(f"| {method} | {budget_text} | {lr:g} | {augment} | {train_images:,} | "
                     f"{epochs or '–'} | "
                     f"{report.cell([r['top1'] for r in rows])} | {best} | {last} |")
    return lines


#: The papers' top-1 % for MCUNet-in1 on CIFAR-10 at 15,936 units (MeDyate paper, table of
#: MCUNet-in1; 128 px, 100 epochs, mean of 3 seeds): L-MeDy, P-TraDy (TraDy), L-TraDy, FullFT.
PAPERS_MCUNET_CIFAR10_15936 = {"medyate": 90.89, "trady": 90.38, "lara_trady": 90.89,
                               "full": 93.87}


def papers_lines(paths):
    """One row per method, runtime and recipe of the CSVs at `paths` (comma-separated), next to
    the papers' number."""
    rows = [row for path in paths.split(",") for row in report.read_csv(path)]
    if not rows:
        raise FileNotFoundError(f"{paths!r} holds no run yet: run benchmarks/papers_scale/run.sh.")
    split = sorted({r["evaluated_on"] for r in rows})
    lines = [f"Top-1 % on the {'/'.join(split)} images; `n` runs per row (1 run: a single seed).",
             "",
             "| method | top-1 % | epochs | augmentation, peak lr | best epoch (its top-1) | "
             "within 1 point of its best from epoch | s / epoch | update memory | papers "
             "(100 epochs, 3 seeds) |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(("linear_probe", "medyate", "trady", "lara_trady", "full"))}
    groups = {}
    for row in rows:
        key = (row["method"], row["runtime"], report.augmentation_text(row), row["learning_rate"],
               int(row["epochs"]))
        groups.setdefault(key, []).append(row)
    for (method, runtime, *_), group in sorted(
            groups.items(), key=lambda item: (order.get(item[0][0], 99), item[0])):
        curve = report.mean_epoch_curve(group)
        best = epoch_text(curve, int(np.nanargmax(curve))) if curve else "–"
        within = str(report.epochs_to_within(curve)) if curve else "–"
        epochs = int(group[0]["epochs"])
        seconds = [r["epoch_seconds"] for r in group if r["epoch_seconds"] > 0]
        recipe = "–" if method == "linear_probe" else (
            f"{report.augmentation_text(group[0])}, {group[0]['learning_rate']:g}")
        paper = PAPERS_MCUNET_CIFAR10_15936.get(method)
        lines.append(
            f"| {report.method_label(method, runtime)} | {report.cell([r['top1'] for r in group])} "
            f"| {epochs or '–'} | {recipe} | {best} | {within} | "
            f"{f'{np.mean(seconds):.0f}' if seconds else '–'} | "
            f"{np.mean([r['update_memory_kb'] for r in group]):,.0f} KB | "
            f"{f'{paper:.2f}' if paper else '–'} |")
    cost = [r["epoch_eval_seconds"] / len(r["epoch_top1"]) for r in rows
            if r["epoch_top1"] and not np.isnan(r["epoch_eval_seconds"])]
    if cost:
        lines += ["", f"Evaluating after every epoch cost {np.mean(cost):.0f} s per epoch "
                  "on average, left out of the seconds per epoch."]
    return lines


def generate(kind, path):
    """The body of one block."""
    for one in path.split(","):
        if not os.path.exists(one):
            raise FileNotFoundError(f"RESULTS.md names {one!r} ({kind}), which does not exist. "
                                    "Run from the repository root, or fix the block's path.")
    if kind == "summary":
        return report.summary_markdown(report.read_csv(path)).rstrip("\n") + "\n"
    if kind == "recipe":
        return "\n".join(recipe_lines(path)) + "\n"
    if kind == "papers":
        return "\n".join(papers_lines(path)) + "\n"
    raise ValueError(f"Unknown block kind {kind!r} in RESULTS.md; expected 'summary', 'recipe' "
                     "or 'papers'.")


def summary_files(text):
    """{summary.md path: its text} for every `summary` block's CSV."""
    files = {}
    for _, kind, path, _, _ in BLOCK.findall(text):
        if kind == "summary":
            files[os.path.join(os.path.dirname(path), "summary.md")] = report.summary_file_text(
                report.read_csv(path))
    return files


def rewrite(text):
    """`text` with every generated block's body regenerated."""
    return BLOCK.sub(lambda m: m.group(1) + generate(m.group(2), m.group(3)) + m.group(5), text)


def main(argv):
    del argv
    with open(FLAGS.results, encoding="utf-8") as f:
        text = f.read()
    new = rewrite(text)
    blocks = len(BLOCK.findall(text))
    summaries = summary_files(text)
    if FLAGS.check:
        stale = [path for path, expected in summaries.items() if _read(path) != expected]
        if new != text or stale:
            print(f"{FLAGS.results}: a generated block or {', '.join(stale) or 'summary.md'} "
                  "differs from its CSV; run python benchmarks/update_results.py",
                  file=sys.stderr)
            sys.exit(1)
        print(f"{FLAGS.results}: {blocks} generated blocks and {len(summaries)} summary.md "
              "match their CSVs")
        return
    with open(FLAGS.results, "w", encoding="utf-8") as f:
        f.write(new)
    for path, expected in summaries.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(expected)
    print(f"rewrote {blocks} generated blocks of {FLAGS.results} and {', '.join(summaries)}")


def _read(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


if __name__ == "__main__":
    app.run(main)
