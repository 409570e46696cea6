"""Locating Fashion-MNIST: local IDX files (e.g. the Debian package) or download."""

import os

import keras
import numpy as np

from keras_medyate.data.errors import DATA_DIR_ENV, DatasetNotFoundError, download_or_explain
from keras_medyate.data.idx import read_idx
from keras_medyate.data.pipeline import RawDataset, Split

#: Fashion-MNIST class names in label order.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where the Debian package `dataset-fashion-mnist` installs the IDX files.
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _idx_files(folder):
    """Returns the four IDX paths (`.gz` or not) if all are in `folder`."""
    paths = {}
    for key, stem in FILES.items():
        for name in (stem + ".gz", stem):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                paths[key] = candidate
                break
        else:
            return None
    return paths


def _find_in(root):
    for folder in (root, os.path.join(root, "fashion-mnist"), os.path.join(root, "fashion_mnist")):
        if os.path.isdir(folder):
            paths = _idx_files(folder)
            if paths is not None:
                return paths
    return None


def _not_found_message(looked_in):
    return (
        "Fashion-MNIST was not found locally. Install the Debian package "
        f"`dataset-fashion-mnist` (files in {SYSTEM_DIR}), or pass "
        f"`data_dir=` / set ${DATA_DIR_ENV} to a folder holding (directly or "
        "in a `fashion-mnist/` sub-folder) "
        + ", ".join(f"{stem}.gz" for stem in FILES.values())
        + f". Looked in: {', '.join(looked_in)}."
    )


def _from_idx(paths):
    def split(images_key, labels_key):
        images = read_idx(paths[images_key], expected_ndim=3)
        labels = read_idx(paths[labels_key], expected_ndim=1)
        if len(images) != len(labels):
            raise ValueError(
                f"Corrupt Fashion-MNIST files: {paths[images_key]} holds "
                f"{len(images)} images but {paths[labels_key]} holds "
                f"{len(labels)} labels."
            )
        if labels.size and int(labels.max()) >= len(CLASS_NAMES):
            raise ValueError(
                f"Corrupt Fashion-MNIST labels in {paths[labels_key]}: "
                f"found label {int(labels.max())}, expected 0..9."
            )
        return Split(labels=labels.astype(np.int32), images=images.astype(np.uint8))

    return RawDataset(
        class_names=list(CLASS_NAMES),
        train=split("train_images", "train_labels"),
        test=split("test_images", "test_labels"),
        source=os.path.dirname(paths["train_images"]),
    )


def _from_keras_download():
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    return RawDataset(
        class_names=list(CLASS_NAMES),
        train=Split(
            labels=np.asarray(y_train).reshape(-1).astype(np.int32), images=np.asarray(x_train)
        ),
        test=Split(
            labels=np.asarray(y_test).reshape(-1).astype(np.int32), images=np.asarray(x_test)
        ),
        source="keras.datasets.fashion_mnist.load_data() (downloaded to the Keras cache)",
    )


def find_fashion_mnist(data_dir=None, download=True):
    """Locates Fashion-MNIST and reads it into memory (uint8, 28x28 grey).

    Order: `data_dir` (an error if it lacks the files), then
    `$KERAS_MEDYATE_DATA_DIR` or its `fashion-mnist/` sub-folder
    (skipped if it lacks them), then `SYSTEM_DIR`, then
    `keras.datasets.fashion_mnist.load_data()` when `download` is true.

    Args:
        data_dir: str, path-like or None. A folder that must hold the IDX
            files. Defaults to `None`.
        download: bool. Whether Keras may download them. Defaults to `True`.

    Returns:
        A `RawDataset`.

    Raises:
        DatasetNotFoundError: If no source is available.
        ValueError: If an IDX file is corrupt.
    """
    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        paths = _find_in(data_dir)
        if paths is None:
            raise DatasetNotFoundError(_not_found_message([data_dir]))
        return _from_idx(paths)

    looked_in = []
    env = os.environ.get(DATA_DIR_ENV)
    roots = [os.path.abspath(os.path.expanduser(env))] if env else []
    roots.append(SYSTEM_DIR)
    for root in roots:
        looked_in.append(root)
        paths = _find_in(root)
        if paths is not None:
            return _from_idx(paths)

    return download_or_explain(
        _from_keras_download, "keras.datasets.fashion_mnist.load_data()",
        _not_found_message(looked_in), download)
