"""`rounds.csv` (one row per round, appended as rounds end) and its plot.

Columns: `round` (0 = the starting model), `test_accuracy` (%),
`mean_upload_bytes` (per client: the exact payload of its update, channel
indices included), `full_model_bytes` (every weight of the model, float32:
what uploading the whole model costs), `seconds` (the round's wall time:
sending, local training, averaging; not the evaluation), then
`mean_upload_flower_bytes` (what Flower's `ArrayRecord.count_bytes()` counts
for the same update: npy headers and keys included), `mean_channels`,
`train_loss`, `clients`, `load_1min` (the machine's load when the round
ended: times from a loaded machine are not comparable).
"""

import csv
import os

COLUMNS = ("round", "test_accuracy", "mean_upload_bytes", "full_model_bytes", "seconds",
           "mean_upload_flower_bytes", "mean_channels", "train_loss", "clients", "load_1min")
_INTEGER = ("round", "full_model_bytes", "clients")


def read_rows(path):
    """The rows of a `rounds.csv` (numbers parsed); [] when there is none."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    parsed = []
    for row in rows:
        parsed.append({key: (int(float(value)) if key in _INTEGER else float(value))
                       for key, value in row.items() if key in COLUMNS and value != ""})
    return parsed


def append_row(path, row):
    """Appends one row (writing the header first), flushed to disk."""
    new = not os.path.isfile(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({key: _format(key, row.get(key, "")) for key in COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def _format(key, value):
    if value == "" or key in _INTEGER:
        return value if value == "" else int(value)
    return round(float(value), 4)


def plot(rows, path, title):
    """Accuracy and upload per round, next to the whole model's size (a PNG)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone
    from matplotlib.ticker import MaxNLocator

    rounds = [r["round"] for r in rows]
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(rounds, [r["test_accuracy"] for r in rows], "o-")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("round (0 = starting model)")
    left.set_ylabel("test accuracy (%)")
    left.grid(alpha=0.3)
    trained = [r for r in rows if r["round"] > 0]
    if trained:
        right.bar([r["round"] for r in trained],
                  [r["mean_upload_bytes"] / 1024 for r in trained], label="mean upload per client")
        right.axhline(rows[0]["full_model_bytes"] / 1024, color="black", linestyle="--",
                      label="whole model")
        right.set_yscale("log")
        right.legend(loc="center right", fontsize=8)
    right.set_xlabel("round")
    right.set_ylabel("KB per client and round")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
