"""Shared fixtures: where the offline data is, and the offline checkpoint fixtures.

Helpers that are not fixtures (tiny models, random data, ...) are in
``tests/helpers.py``; test files import them from there.

Offline data (checkpoints, CIFAR-10, Fashion-MNIST) is found the way the library
finds it: the environment variable first (``KERAS_MEDYATE_WEIGHTS_DIR``,
``KERAS_MEDYATE_DATA_DIR``), then, for developers, ``<repo>/../shared/data``.
Fashion-MNIST is also read from the Debian package ``dataset-fashion-mnist``.
The paths are resolved once, when this file is imported, so a test that
monkeypatches a variable does not change what the other tests use.

When data is missing, the fixture fails under CI (``CI=true``) with the variable
to set, and skips with the same message elsewhere (``pytest.ini`` prints skip
reasons: ``-rs``). Missing packages are treated the same way: under CI,
``pytest.importorskip`` (how the LiteRT, Ray, Flower and notebook tests ask for
``ai_edge_litert``, ``ray``, ``flwr``, ``nbclient``…) fails instead of skipping, since
``.ci/run`` installs every extra the tests import (the ``test`` extra includes the
``federated`` one). Example::

    def test_mcunet_loads(weights_dir):          # a folder holding mcunet-5fps.pkl
        kmd.models.mcunet_5fps(weights_dir=weights_dir)
"""

import os
import pathlib

from keras_medyate import console

console.quiet_tensorflow()  # before Keras imports TensorFlow

import keras  # noqa: E402
import pytest  # noqa: E402


from tests.helpers import MODEL_FILES, REPO  # noqa: E402

WEIGHTS_DIR_ENV = "KERAS_MEDYATE_WEIGHTS_DIR"
DATA_DIR_ENV = "KERAS_MEDYATE_DATA_DIR"
#: The developers' fallback: a `shared/data` folder beside the clone.
DEVELOPER_DATA_DIR = os.path.join(os.path.dirname(REPO), "shared", "data")
#: Where the Debian package `dataset-fashion-mnist` installs its files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

#: The checkpoints the tests load (presets `mcunet_5fps` and `mobilenetv2_w035`).
CHECKPOINTS = tuple(MODEL_FILES.values())
CIFAR10_TARBALL = os.path.join("cifar10", "cifar10_jpg.tar.gz")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _from_env_or_developer(variable, developer_dir):
    """[(where it came from, path)]: the variable's folder if set, then the fallback."""
    candidates = []
    if os.environ.get(variable):
        value = os.path.abspath(os.path.expanduser(os.environ[variable]))
        candidates.append((f"${variable}", value))
    candidates.append(("<repo>/../shared/data fallback", developer_dir))
    return candidates


WEIGHTS_CANDIDATES = _from_env_or_developer(
    WEIGHTS_DIR_ENV, os.path.join(DEVELOPER_DATA_DIR, "weights"))
DATA_CANDIDATES = _from_env_or_developer(DATA_DIR_ENV, DEVELOPER_DATA_DIR)
#: The data folder the tests use (the variable if set, else the developer folder);
#: kept for the test files that join paths onto it.
SHARED_DATA = DATA_CANDIDATES[0][1]


def _has_checkpoints(folder):
    return all(os.path.isfile(os.path.join(folder, name)) for name in CHECKPOINTS)


def _has_cifar10_tarball(folder):
    return os.path.isfile(os.path.join(folder, CIFAR10_TARBALL))


def _fashion_mnist_folder(root):
    """The folder holding the four IDX files (gzipped or not), as the library accepts."""
    for folder in (root, os.path.join(root, "fashion-mnist"), os.path.join(root, "fashion_mnist")):
        if all(os.path.isfile(os.path.join(folder, stem + ".gz"))
               or os.path.isfile(os.path.join(folder, stem)) for stem in FASHION_MNIST_FILES):
            return folder
    return None


#: Most pytest-xdist workers `-n auto` starts (pytest.ini): each worker is a process holding
#: TensorFlow, and the notebook, Ray and Flower tests start processes of their own. The suite
#: was measured with 1 and 2 workers (README), not with more.
MAX_AUTO_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core this process may use, at most `MAX_AUTO_WORKERS`."""
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def under_ci():
    """True when the CI variable says so (GitHub Actions, GitLab and `.ci/run` set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing_data(what, candidates, how):
    """Fails under CI, skips elsewhere, saying what was looked for, where, and what to set."""
    looked = "; ".join(f"{path} ({origin})" for origin, path in candidates)
    message = f"{what} not found. Looked in: {looked}. {how}"
    if under_ci():
        pytest.fail(f"{message} (CI=true: missing test data is a failure, not a skip)",
                    pytrace=False)
    pytest.skip(message)


_importorskip = pytest.importorskip


def importorskip_or_fail_under_ci(modname, *args, **kwargs):
    """`pytest.importorskip`, except that under CI a missing package fails the test.

    Installed as `pytest.importorskip` when this file is imported under CI, so
    every test file's (module-level or in-test) `pytest.importorskip` obeys it.
    """
    try:
        return _importorskip(modname, *args, **kwargs)
    except pytest.skip.Exception as skipped:
        reason = skipped.msg
    pytest.fail(f"{reason} (CI=true: a missing test package is a failure, not a skip; "
                ".ci/run installs the `test` and `cluster` extras: "
                "pip install -e '.[test,cluster]')", pytrace=False)


if under_ci():
    pytest.importorskip = importorskip_or_fail_under_ci


def first_folder(candidates, holds, what, how):
    """The first candidate folder that `holds` the data, else `missing_data`."""
    for _, folder in candidates:
        if holds(folder):
            return folder
    missing_data(what, candidates, how)


@pytest.fixture(scope="session")
def weights_dir():
    """The folder holding the tiny-training checkpoints (`CHECKPOINTS`), as a str."""
    return first_folder(WEIGHTS_CANDIDATES, _has_checkpoints,
                        f"Checkpoints {', '.join(CHECKPOINTS)}",
                        f"Set {WEIGHTS_DIR_ENV} to a folder holding them.")


@pytest.fixture(scope="session")
def data_dir():
    """The data folder holding `cifar10/cifar10_jpg.tar.gz` (for $KERAS_MEDYATE_DATA_DIR)."""
    return first_folder(DATA_CANDIDATES, _has_cifar10_tarball,
                        f"The CIFAR-10 archive {CIFAR10_TARBALL}",
                        f"Set {DATA_DIR_ENV} to the folder holding cifar10/.")


@pytest.fixture(scope="session")
def cifar10_tarball(data_dir):
    """The path of `cifar10_jpg.tar.gz` in `data_dir`."""
    return os.path.join(data_dir, CIFAR10_TARBALL)


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """The folder holding the Fashion-MNIST IDX files, looked up in the library's order:
    $KERAS_MEDYATE_DATA_DIR (or its `fashion-mnist/`), the Debian package's folder, then
    the developer fallback."""
    candidates = DATA_CANDIDATES[:-1] + [("Debian package dataset-fashion-mnist",
                                          FASHION_MNIST_SYSTEM_DIR)] + DATA_CANDIDATES[-1:]
    for _, root in candidates:
        folder = _fashion_mnist_folder(root)
        if folder is not None:
            return folder
    missing_data("Fashion-MNIST", candidates,
                 f"Install the Debian package dataset-fashion-mnist or set {DATA_DIR_ENV} to "
                 "a folder holding fashion-mnist/ with the four IDX files.")


@pytest.fixture
def offline_weights(monkeypatch, tmp_path):
    """A private Keras home, and every checkpoint download refused: a test that
    would reach the network fails loudly (`pytestmark = usefixtures(...)`)."""
    from keras_medyate.models import presets  # noqa: PLC0415

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def _no_download(*args, **kwargs):
        raise AssertionError(f"test tried to download {args}")

    monkeypatch.setattr(presets, "_download", _no_download)


@pytest.fixture
def weights(weights_dir, monkeypatch):
    """The checkpoint folder (a Path), with KERAS_MEDYATE_WEIGHTS_DIR set to it for one test."""
    monkeypatch.setenv(WEIGHTS_DIR_ENV, weights_dir)
    return pathlib.Path(weights_dir)


@pytest.fixture(scope="module")
def checkpoints(weights_dir):
    """Preset name → the checkpoint read by `load_tiny_training_checkpoint`."""
    from keras_medyate.models import load_tiny_training_checkpoint  # noqa: PLC0415

    folder = pathlib.Path(weights_dir)
    return {name: load_tiny_training_checkpoint(folder / f) for name, f in MODEL_FILES.items()}


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    yield
