"""Locating CIFAR-10: a local copy, Keras' cache, a Keras download, or the shipped subset.

Local copies come in two formats: the JPEG release (`cifar10_jpg/{train,test}/
<class>/*.jpg`, or its tarball `cifar10_jpg.tar.gz`) and the standard Python
release that `keras.datasets.cifar10.load_data()` downloads and caches
(`cifar-10-batches-py/` with `data_batch_1` ... `data_batch_5` and
`test_batch`). When no full copy is found and none can be downloaded, the
6,000-image subset shipped with the package (`keras_medyate/assets/
cifar10_subset.tar.gz`: 500 training and 100 test images per class) is used,
with a warning.
"""

import functools
import os
import pickle
import tarfile
import warnings

import keras
import numpy as np

from keras_medyate import files
from keras_medyate.data.cache import extract_tarball_once
from keras_medyate.data.errors import DATA_DIR_ENV, DatasetNotFoundError
from keras_medyate.data.pipeline import RawDataset, Split, list_image_folder

#: CIFAR-10 class names in label order.
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

TREE_NAME = "cifar10_jpg"
TARBALL_NAME = "cifar10_jpg.tar.gz"
TARBALL_SHA256 = "a26e584c3528041b2cd0d57bece953ce8035ebbe8e83b6c872dd14736e358214"

#: The folder of the standard Python release (what `keras.datasets.cifar10` caches).
BATCHES_NAME = "cifar-10-batches-py"
_BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

#: The subset shipped with the package: a tarball of the JPEG tree holding the
#: images `load("cifar10", train_per_class=500, test_per_class=100, seed=0)`
#: selects from the full JPEG release (made by `assets/make_cifar10_subset.py`).
SHIPPED_SUBSET = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
    "cifar10_subset.tar.gz")
SHIPPED_SUBSET_SHA256 = "8711c4b8337d51d79c08f810f8e38ef08567ff153c49f487eda536a7d5a6692f"
SHIPPED_PER_CLASS = {"train": 500, "test": 100}
#: How `DatasetInfo.source` starts when the shipped subset is used.
SHIPPED_SOURCE = "the CIFAR-10 subset shipped with keras-medyate"


def _is_tree(folder):
    return os.path.isdir(os.path.join(folder, "train")) and os.path.isdir(
        os.path.join(folder, "test")
    )


def _is_batches(folder):
    return all(os.path.isfile(os.path.join(folder, name)) for name in _BATCH_FILES)


def _find_local(root, accept_root_as_tree):
    """Returns an unpacked tree, a tarball or a batches folder found at `root`, else None."""
    if os.path.isfile(root) and root.endswith((".tar.gz", ".tgz", ".tar")):
        return root
    if not os.path.isdir(root):
        return None
    if accept_root_as_tree and (_is_tree(root) or _is_batches(root)):
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
    for batches in (os.path.join(root, BATCHES_NAME), os.path.join(root, "cifar10", BATCHES_NAME)):
        if _is_batches(batches):
            return batches
    return None


def keras_cache_candidates():
    """Where `keras.datasets.cifar10.load_data()` leaves the batches: Keras 3.8+
    (`datasets/cifar-10-batches-py-target/cifar-10-batches-py`) and earlier
    releases (`datasets/cifar-10-batches-py`), under the Keras home."""
    datasets = os.path.join(files.keras_home(), "datasets")
    return [os.path.join(datasets, BATCHES_NAME + "-target", BATCHES_NAME),
            os.path.join(datasets, BATCHES_NAME)]


def _not_found_message(looked_in):
    return (
        "CIFAR-10 was not found locally. Pass `data_dir=` or set "
        f"${DATA_DIR_ENV} to a folder holding `{TREE_NAME}/` (the unpacked "
        f"tree {TREE_NAME}/{{train,test}}/<class>/*.jpg), `{TARBALL_NAME}`, "
        f"`{BATCHES_NAME}/` (the standard Python release, as "
        "`keras.datasets.cifar10.load_data()` caches it) or the same under `cifar10/`. "
        f"Looked in: {', '.join(looked_in)}."
    )


class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR-10 batch: a dict of bytes, lists and numpy arrays, nothing else."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") \
                and name in ("_reconstruct", "scalar"):
            return getattr(_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in a protocol-2 pickle
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _multiarray():
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    return multiarray


def _read_batch(path):
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], np.int32)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch of the standard Python release ({err}); "
            "replace the folder with a fresh copy.") from err
    return images.transpose(0, 2, 3, 1), labels


def _from_batches(folder):
    splits = {}
    for split, names in (("train", _BATCH_FILES[:5]), ("test", _BATCH_FILES[5:])):
        parts = [_read_batch(os.path.join(folder, name)) for name in names]
        splits[split] = Split(labels=np.concatenate([p[1] for p in parts]),
                              images=np.concatenate([p[0] for p in parts]))
    return RawDataset(class_names=list(CLASS_NAMES), train=splits["train"], test=splits["test"],
                      source=folder)


@functools.lru_cache(maxsize=1)
def _from_shipped_subset():
    """The subset shipped with the package, decoded in memory once per process
    (nothing is written)."""
    import tensorflow as tf

    files.verify_sha256(SHIPPED_SUBSET, SHIPPED_SUBSET_SHA256, what="the shipped CIFAR-10 subset",
                        advice="Reinstall keras-medyate.")
    encoded = {"train": ([], []), "test": ([], [])}
    with tarfile.open(SHIPPED_SUBSET, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[0] == TREE_NAME:
                data, labels = encoded[parts[1]]
                data.append(tar.extractfile(member).read())
                labels.append(CLASS_NAMES.index(parts[2]))
    splits = {}
    for split, (data, labels) in encoded.items():
        order = sorted(range(len(data)), key=lambda i: labels[i])  # stable: file order per class
        images = np.stack([tf.io.decode_image(data[i], channels=3).numpy() for i in order])
        splits[split] = Split(labels=np.asarray([labels[i] for i in order], np.int32),
                              images=images)
    return RawDataset(
        class_names=list(CLASS_NAMES), train=splits["train"], test=splits["test"],
        source=(f"{SHIPPED_SOURCE} ({SHIPPED_PER_CLASS['train']} train / "
                f"{SHIPPED_PER_CLASS['test']} test images per class)"))


#: The error of this process's failed download, if one failed (offline: fail once).
_FAILED_DOWNLOAD = []


def _from_tree(tree):
    class_names, train = list_image_folder(os.path.join(tree, "train"))
    _, test = list_image_folder(os.path.join(tree, "test"), class_names)
    return RawDataset(class_names=class_names, train=train, test=test, source=tree)


def _from_keras_download():
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


def find_cifar10(data_dir=None, download=True):
    """Locates CIFAR-10 and lists its images (JPEG files are not decoded yet).

    Order: `data_dir` (an error if it holds no CIFAR-10), then
    `$KERAS_MEDYATE_DATA_DIR` (skipped if it holds none), then Keras' own
    cache of `keras.datasets.cifar10.load_data()` (see
    `keras_cache_candidates`), then that download when `download` is
    true, and last the subset shipped with the package (with a warning that
    says how to get the full dataset). A tarball is unpacked once into the
    cache (see `keras_medyate.data.cache.cache_dir`).

    Args:
        data_dir: str, path-like or None. A folder that must hold CIFAR-10.
            Defaults to `None`.
        download: bool. Whether Keras may download it. Defaults to `True`.

    Returns:
        A `RawDataset`.

    Raises:
        DatasetNotFoundError: If `data_dir` holds no CIFAR-10.
        ValueError: If a local copy is corrupt (checksum or format).
    """
    looked_in = []
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

    if found is None:
        looked_in += keras_cache_candidates()
        found = next((c for c in keras_cache_candidates() if _is_batches(c)), None)
    if found is not None:
        if os.path.isfile(found):
            found = extract_tarball_once(found, top=TREE_NAME, expected_sha256=TARBALL_SHA256)
        return _from_batches(found) if _is_batches(found) else _from_tree(found)

    if download and _FAILED_DOWNLOAD:
        why = f"downloading it failed earlier in this process ({_FAILED_DOWNLOAD[0]})"
    elif download:
        try:
            return _from_keras_download()
        except Exception as err:  # network errors come in many types
            _FAILED_DOWNLOAD.append(err)  # not tried again by this process
            why = f"downloading it with keras.datasets.cifar10.load_data() failed ({err})"
    else:
        why = "downloading is disabled (download=False)"
    warnings.warn(
        f"{_not_found_message(looked_in)} Also {why}. Using the subset shipped with "
        f"keras-medyate instead: {SHIPPED_PER_CLASS['train']} train / "
        f"{SHIPPED_PER_CLASS['test']} test images per class. For the full dataset, run "
        "`python -c \"import keras; keras.datasets.cifar10.load_data()\"` once online.",
        UserWarning, stacklevel=3)
    return _from_shipped_subset()
