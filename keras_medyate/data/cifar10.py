"""Locating CIFAR-10: local JPEG tree, cached tarball, or Keras download."""

from __future__ import annotations

import os
from typing import List, Optional

import keras
import numpy as np

from keras_medyate.data.cache import extract_tarball_once
from keras_medyate.data.errors import DATA_DIR_ENV, DatasetNotFoundError, download_or_explain
from keras_medyate.data.pipeline import RawDataset, Split, list_image_folder

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10 class names in label order."""

TREE_NAME = "cifar10_jpg"
TARBALL_NAME = "cifar10_jpg.tar.gz"
TARBALL_SHA256 = "a26e584c3528041b2cd0d57bece953ce8035ebbe8e83b6c872dd14736e358214"


def _is_tree(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, "train")) and os.path.isdir(
        os.path.join(folder, "test")
    )


def _find_local(root: str, accept_root_as_tree: bool) -> Optional[str]:
    """Returns an unpacked tree or a tarball found at ``root``, else None."""
    if os.path.isfile(root) and root.endswith((".tar.gz", ".tgz", ".tar")):
        return root
    if not os.path.isdir(root):
        return None
    if accept_root_as_tree and _is_tree(root):
        return root
    for tree in (
        os.path.join(root, TREE_NAME),
        os.path.join(root, "cifar10", TREE_NAME),
    ):
        if _is_tree(tree):
            return tree
    for tarball in (
        os.path.join(root, TARBALL_NAME),
        os.path.join(root, "cifar10", TARBALL_NAME),
    ):
        if os.path.isfile(tarball):
            return tarball
    return None


def _not_found_message(looked_in: List[str]) -> str:
    where = ", ".join(looked_in) if looked_in else "nowhere (no data_dir, no $" + DATA_DIR_ENV + ")"
    return (
        "CIFAR-10 was not found locally. Pass `data_dir=` or set "
        f"${DATA_DIR_ENV} to a folder holding `{TREE_NAME}/` (the unpacked "
        f"tree {TREE_NAME}/{{train,test}}/<class>/*.jpg), `{TARBALL_NAME}` or "
        f"`cifar10/{TARBALL_NAME}`. Looked in: {where}."
    )


def _from_tree(tree: str) -> RawDataset:
    class_names, train = list_image_folder(os.path.join(tree, "train"))
    _, test = list_image_folder(os.path.join(tree, "test"), class_names)
    return RawDataset(class_names=class_names, train=train, test=test, source=tree)


def _from_keras_download() -> RawDataset:
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()

    def split(x, y):
        x = np.asarray(x)
        if x.ndim == 4 and x.shape[1] == 3 and x.shape[-1] != 3:
            x = np.transpose(x, (0, 2, 3, 1))  # channels_first config
        return Split(labels=np.asarray(y).reshape(-1).astype(np.int32), images=x)

    return RawDataset(
        class_names=list(CLASS_NAMES),
        train=split(x_train, y_train),
        test=split(x_test, y_test),
        source="keras.datasets.cifar10.load_data() (downloaded to the Keras cache)",
    )


def find_cifar10(data_dir: Optional[str] = None, download: bool = True) -> RawDataset:
    """Locates CIFAR-10 and lists its images without decoding them.

    Order: ``data_dir`` (an error if it holds no CIFAR-10), then
    ``$KERAS_MEDYATE_DATA_DIR`` (skipped if it holds none), then
    ``keras.datasets.cifar10.load_data()`` when ``download`` is true. A
    tarball is unpacked once into the cache (see
    :func:`keras_medyate.data.cache.cache_dir`).

    Raises:
        DatasetNotFoundError: If no source is available.
        ValueError: If the tarball is corrupt (checksum or format).
    """
    looked_in: List[str] = []
    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        found = _find_local(data_dir, accept_root_as_tree=True)
        if found is None:
            raise DatasetNotFoundError(_not_found_message([data_dir]))
    else:
        found = None
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            env = os.path.abspath(os.path.expanduser(env))
            looked_in.append(env)
            found = _find_local(env, accept_root_as_tree=False)

    if found is not None:
        if os.path.isfile(found):
            found = extract_tarball_once(found, top=TREE_NAME, expected_sha256=TARBALL_SHA256)
        return _from_tree(found)

    return download_or_explain(
        _from_keras_download, "keras.datasets.cifar10.load_data()",
        _not_found_message(looked_in), download)
