r"""Executes the Colab tutorials and stores their outputs in the notebooks.

The committed notebooks keep the outputs of a FULL run, so that a reader sees
real results on GitHub. Rerun this after changing a notebook (about 55
minutes for the four on 2 CPU cores, most of it the paper comparison; the
federated tutorial, 04, needs the `federated` extra):

    python colab/execute_notebooks.py \
        --data_dir=../shared/data --weights_dir=../shared/data/weights

    python colab/execute_notebooks.py 01_quickstart.ipynb   # one notebook

Each notebook runs in a fresh `python3` kernel whose working directory is a
temporary folder (the files the notebooks write stay out of `colab/`). A
notebook is overwritten only if every cell ran without error; otherwise the
failed copy is saved next to the temporary folder and the script exits with 1.

`--smoke` runs with `KERAS_MEDYATE_SMOKE=1` (tiny settings, what
`tests/test_notebooks.py` checks) and writes the executed copies to
`--output_dir` only: smoke outputs never go into `colab/`.

Needs the `notebooks` extra: `pip install -e ".[notebooks]"` (and `federated` for 04, which
`.[test]` includes).
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Execute the colab/ notebooks (full mode: outputs stored in place).")
    parser.add_argument("notebooks", nargs="*",
                        help="Notebook file names in colab/ (default: every *.ipynb).")
    parser.add_argument("--smoke", action="store_true",
                        help="KERAS_MEDYATE_SMOKE=1; outputs go to --output_dir, never in place.")
    parser.add_argument("--output_dir", default=None,
                        help="Write the executed notebooks here instead of in place "
                             "(default for --smoke: a new temporary folder).")
    parser.add_argument("--data_dir", default=None,
                        help="Sets KERAS_MEDYATE_DATA_DIR (offline CIFAR-10 / Fashion-MNIST).")
    parser.add_argument("--weights_dir", default=None,
                        help="Sets KERAS_MEDYATE_WEIGHTS_DIR (offline checkpoints).")
    parser.add_argument("--timeout", type=int, default=4 * 3600,
                        help="Per-cell timeout in seconds.")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name.")
    return parser.parse_args(argv)


def notebook_names(requested):
    available = sorted(n for n in os.listdir(HERE) if n.endswith(".ipynb"))
    if not requested:
        return available
    names = [os.path.basename(n) for n in requested]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SystemExit(f"Unknown notebooks {unknown}; available: {available}")
    return names


def configure_environment(args):
    """The kernel inherits this process's environment."""
    if args.smoke:
        os.environ["KERAS_MEDYATE_SMOKE"] = "1"
    else:
        os.environ.pop("KERAS_MEDYATE_SMOKE", None)
    if args.data_dir:
        os.environ["KERAS_MEDYATE_DATA_DIR"] = os.path.abspath(args.data_dir)
    if args.weights_dir:
        os.environ["KERAS_MEDYATE_WEIGHTS_DIR"] = os.path.abspath(args.weights_dir)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def execute(name, args, output_dir):
    """Runs one notebook; returns (seconds, path written or None on failure)."""
    import nbclient
    import nbformat

    nb = nbformat.read(os.path.join(HERE, name), as_version=4)
    workdir = tempfile.mkdtemp(prefix=f"{os.path.splitext(name)[0]}_")
    client = nbclient.NotebookClient(
        nb, timeout=args.timeout, kernel_name=args.kernel, record_timing=False,
        resources={"metadata": {"path": workdir}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        failed = os.path.join(workdir, f"FAILED_{name}")
        nbformat.write(nb, failed)
        print(f"{name}: FAILED after {time.perf_counter() - start:.0f} s; executed copy: "
              f"{failed}\n{str(error)[-2000:]}", flush=True)
        return time.perf_counter() - start, None
    seconds = time.perf_counter() - start
    nbformat.validate(nb)
    path = os.path.join(output_dir or HERE, name)
    nbformat.write(nb, path)
    return seconds, path


def main(argv=None):
    args = parse_args(argv)
    names = notebook_names(args.notebooks)
    output_dir = args.output_dir
    if args.smoke and output_dir is None:
        output_dir = tempfile.mkdtemp(prefix="colab_smoke_")
    if output_dir and os.path.abspath(output_dir) == HERE and args.smoke:
        raise SystemExit("Smoke outputs must not be written into colab/.")
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    configure_environment(args)
    mode = "smoke" if args.smoke else "full"
    print(f"executing {len(names)} notebooks in {mode} mode; data: "
          f"{os.environ.get('KERAS_MEDYATE_DATA_DIR') or 'downloads'}, weights: "
          f"{os.environ.get('KERAS_MEDYATE_WEIGHTS_DIR') or 'downloads'}", flush=True)
    failures, total = [], 0.0
    for name in names:
        print(f"{name}: running...", flush=True)
        seconds, path = execute(name, args, output_dir)
        total += seconds
        if path is None:
            failures.append(name)
        else:
            print(f"{name}: {seconds:.0f} s ({seconds / 60:.1f} min) -> {path}", flush=True)
    print(f"total {total:.0f} s ({total / 60:.1f} min)"
          + (f"; FAILED: {', '.join(failures)}" if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
