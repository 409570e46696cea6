"""The Colab tutorials in `colab/` run end to end (smoke mode, offline) and follow the layout.

Every notebook is executed with `nbclient` in a fresh kernel with
`KERAS_MEDYATE_SMOKE=1` (a few images, 32 px, 1-2 epochs), the shared offline
data and checkpoints, and a temporary `KERAS_HOME`. The executed copies are
written under pytest's tmp dir, never back into `colab/` (the committed
notebooks keep the outputs of a full run: `python colab/execute_notebooks.py`).

CIFAR-10: the notebooks read the shared `cifar10_jpg.tar.gz`, which the library
unpacks into `$KERAS_HOME/keras_medyate/datasets/` on first use (about a minute
on this disk). The session fixture below prepares that cache once, before any
notebook starts, so the per-notebook times measure the notebooks: it links the
already-unpacked tree of the user's Keras home when there is one (read only),
else unpacks the tarball once into the session's temporary `KERAS_HOME`.

Needs the `notebooks` packages, which the `test` extra includes.
"""

import os
import re
import time

import pytest

from tests.helpers import REPO

nbformat = pytest.importorskip("nbformat", reason="needs the notebooks extra: "
                               "pip install -e '.[notebooks]'")
nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra: "
                               "pip install -e '.[notebooks]'")
pytest.importorskip("ipykernel", reason="needs the notebooks extra: "
                    "pip install -e '.[notebooks]'")

COLAB = os.path.join(REPO, "colab")
NOTEBOOKS = sorted(name for name in os.listdir(COLAB) if name.endswith(".ipynb"))
#: Each notebook must run in under 3 minutes in smoke mode; the assert allows
#: 50 % slack for a loaded CI machine (override with this variable).
SMOKE_LIMIT_SECONDS = float(os.environ.get("KERAS_MEDYATE_NOTEBOOK_LIMIT", "270"))
CELL_TIMEOUT_SECONDS = 600
#: Notebooks not executed here, with the reason (shown by `pytest -rs`).
NOT_EXECUTED = {}

def read(name):
    return nbformat.read(os.path.join(COLAB, name), as_version=4)


#: The extras each tutorial's install cell asks for (the default: litert and notebooks).
EXTRAS = {"04_federated.ipynb": "litert,notebooks,federated"}


def test_every_tutorial_is_listed():
    assert NOTEBOOKS == ["01_quickstart.ipynb", "02_on_device_training.ipynb",
                         "03_reproduce_the_paper.ipynb", "04_federated.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_layout(name):
    """TF-docs layout: license, title, Colab badge, guarded install cell, plots tagged."""
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and "Copyright" in cells[0].source
    assert cells[1].cell_type == "code" and "Apache License, Version 2.0" in cells[1].source
    assert cells[2].cell_type == "markdown" and cells[2].source.startswith("# ")
    badge = ("https://colab.research.google.com/github/keras-medyate/keras-medyate/blob/main/"
             f"colab/{name}")
    assert badge in cells[3].source and "colab-badge.svg" in cells[3].source
    sources = [c.source for c in cells if c.cell_type == "code"]
    install = [s for s in sources if "pip install" in s]
    assert len(install) == 1
    assert 'find_spec("keras_medyate") is None' in install[0]
    assert "git+https://github.com/keras-medyate/keras-medyate" in install[0]
    assert any("KERAS_MEDYATE_SMOKE" in s for s in sources)
    assert any("plot" in c.metadata.get("tags", []) for c in cells if c.cell_type == "code")
    text = "\n".join(c.source for c in cells)
    assert "TODO" not in text and "tf.keras" not in text
    # The install cell uses the project's URL (setup.py) and the extras the notebooks need.
    url = "git+https://github.com/keras-medyate/keras-medyate"
    extras = EXTRAS.get(name, "litert,notebooks")
    assert f'"keras-medyate[{extras}] @ {url}"' in install[0]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_outputs_show_no_local_paths_or_runtime_noise(name):
    """What a reader sees on GitHub: no path of the machine that ran the notebook,
    no log line of a runtime (the XNNPACK delegate's INFO line)."""
    for index, cell in enumerate(read(name).cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            for noise in ("/work/", "/root/", "/home/", "/tmp/", "INFO: Created TensorFlow Lite"):
                assert noise not in text, f"stored output of cell {index} of {name}: {noise!r}"


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory, weights_dir, data_dir):
    """Environment of the smoke runs: offline data, a session KERAS_HOME with CIFAR-10."""
    from keras_medyate.data import cache, cifar10

    keras_home = tmp_path_factory.mktemp("keras_home")
    datasets = keras_home / "keras_medyate" / "datasets"
    datasets.mkdir(parents=True)
    existing = os.path.join(cache.cache_dir(), cifar10.TREE_NAME)  # the user's Keras home
    start = time.perf_counter()
    if cache.is_complete(existing):
        os.symlink(existing, datasets / cifar10.TREE_NAME)
        how = f"linked {existing}"
    else:
        tarball = os.path.join(data_dir, "cifar10", cifar10.TARBALL_NAME)
        cache.extract_tarball_once(tarball, top=cifar10.TREE_NAME,
                                   expected_sha256=cifar10.TARBALL_SHA256,
                                   destination=str(datasets))
        how = "unpacked the shared tarball"
    print(f"\nCIFAR-10 cache for the notebooks: {how} ({time.perf_counter() - start:.0f} s)")
    return {
        "KERAS_MEDYATE_SMOKE": "1",
        "KERAS_MEDYATE_DATA_DIR": data_dir,
        "KERAS_MEDYATE_WEIGHTS_DIR": weights_dir,
        "KERAS_HOME": str(keras_home),
        # The kernel must draw with the inline backend, whatever the caller uses.
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }


def error_text(cell):
    return "\n".join(
        f"{o.get('ename')}: {o.get('evalue')}\n" + re.sub(r"\x1b\[[0-9;]*m", "",
                                                           "\n".join(o.get("traceback", [])))
        for o in cell.get("outputs", []) if o.output_type == "error")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name, notebook_env, tmp_path, monkeypatch):
    if name in NOT_EXECUTED:
        pytest.skip(NOT_EXECUTED[name])
    for key, value in notebook_env.items():
        monkeypatch.setenv(key, value)
    nb = read(name)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3", allow_errors=True,
        record_timing=False, resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    # The executed copy, for inspection; colab/ is never written.
    nbformat.write(nb, str(tmp_path / name))
    print(f"\n{name}: executed in smoke mode in {seconds:.0f} s")

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for index, cell in enumerate(code_cells):
        errors = error_text(cell)
        assert not errors, f"code cell {index} of {name} failed:\n{cell.source}\n{errors[-3000:]}"
        assert cell.execution_count is not None, f"code cell {index} of {name} did not run"
        # Only the notebook's own output: no TensorFlow C++ log lines, no Keras warnings.
        text = "".join(o.get("text", "") for o in cell.outputs if "text" in o)
        for noise in ("I0000", "W0000", "E0000", "shuffle=True"):
            assert noise not in text, f"code cell {index} of {name} printed {noise!r}:\n{text}"
    plots = [c for c in code_cells if "plot" in c.metadata.get("tags", [])]
    assert plots
    for cell in plots:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), (
            f"no figure in this cell of {name}:\n{cell.source}")
    assert seconds < SMOKE_LIMIT_SECONDS, (
        f"{name} took {seconds:.0f} s in smoke mode (limit {SMOKE_LIMIT_SECONDS:.0f} s)")


def test_kotlin_of_the_on_device_tutorial_is_quoted_from_the_android_guide():
    guide_path = os.path.join(REPO, "tflite_export", "ANDROID.md")
    if not os.path.exists(guide_path):
        pytest.skip("tflite_export/ANDROID.md is not written yet")
    with open(guide_path, encoding="utf-8") as f:
        guide = f.read()
    text = "\n".join(c.source for c in read("02_on_device_training.ipynb").cells
                     if c.cell_type == "markdown")
    blocks = re.findall(r"```kotlin\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "the on-device tutorial quotes no Kotlin from ANDROID.md"
    def lines(text):  # excerpts may be re-indented
        return "\n".join(line.strip() for line in text.strip().splitlines())

    for block in blocks:
        assert lines(block) in lines(guide), (
            "Kotlin in 02_on_device_training.ipynb differs from tflite_export/ANDROID.md; "
            f"quote it again:\n{block[:500]}")
