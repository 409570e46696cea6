"""``load``: batched ``tf.data`` pipelines for the supported datasets."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from keras_medyate.data.augmentation import AugmentArg, resolve_augmentation
from keras_medyate.data.cifar10 import SHIPPED_SOURCE, find_cifar10
from keras_medyate.data.errors import DATA_DIR_ENV
from keras_medyate.data.fashion_mnist import find_fashion_mnist
from keras_medyate.data.folder import find_folder
from keras_medyate.data.pipeline import (
    RawDataset,
    build_pipeline,
    normalize_image_size,
    subset_per_class,
)
from keras_medyate.data.preprocessing import PreprocessArg, resolve_preprocess

_ALIASES = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "fashion_mnist": "fashion_mnist",
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
}
FOLDER_PREFIX = "folder:"
ACCEPTED_NAMES = ("cifar10", "fashion_mnist", "folder:/path/with/train/and/test")
"""The forms accepted for the ``name`` argument of :func:`load`."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Describes what :func:`load` returned.

    Attributes:
        name: Canonical dataset name: ``"cifar10"``, ``"fashion_mnist"`` or
            ``"folder:<absolute path>"`` (can be passed back to ``load``).
        class_names: Class names; label ``i`` is ``class_names[i]``.
        num_classes: ``len(class_names)``.
        num_train: Number of training images (after per-class subsetting).
        num_test: Number of test images (after per-class subsetting).
        image_size: ``(height, width)`` of the returned images.
        source: Where the data came from: a folder path, or a description
            of the Keras download.
    """

    name: str
    class_names: Tuple[str, ...]
    num_classes: int
    num_train: int
    num_test: int
    image_size: Tuple[int, int]
    source: str


def check_name(name: str) -> str:
    """Returns the canonical form of a dataset name (``"folder:"`` for a folder).

    Raises:
        ValueError: For a name :func:`load` does not accept (the message lists
            the accepted forms).
    """
    return _canonical_name(name)


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(
            f"Dataset name must be a string, one of {list(ACCEPTED_NAMES)}; received {name!r}."
        )
    if name.startswith(FOLDER_PREFIX):
        if not name[len(FOLDER_PREFIX) :].strip():
            raise ValueError(
                f"Dataset name {name!r} has no path: use 'folder:/path/with/train/and/test'."
            )
        return FOLDER_PREFIX
    canonical = _ALIASES.get(name.strip().lower())
    if canonical is None:
        raise ValueError(
            f"Unknown dataset {name!r}. Accepted forms: 'cifar10', "
            "'fashion_mnist', or 'folder:/path/with/train/and/test' (a folder "
            "with train/<class>/<image> and test/<class>/<image>)."
        )
    return canonical


def _check_positive_int(value, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{arg}` must be a positive int; received {value!r}.")
    return int(value)


def per_class_count(value, arg: str) -> Optional[int]:
    """A per-class image count: a positive int, or ``None`` / ``"all"`` for every image.

    Strings of digits (from a command line) are accepted too.

    Raises:
        ValueError: For anything else, naming ``arg`` and the value received.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"`{arg}` must be a positive int or 'all' (every image); received {value!r}.")
    return int(value)


def load(
    name: str,
    image_size: Union[int, Tuple[int, int]] = 128,
    batch_size: int = 32,
    train_per_class: Union[int, str, None] = None,
    test_per_class: Union[int, str, None] = None,
    seed: Optional[int] = 0,
    preprocess: PreprocessArg = "tiny_training",
    data_dir: Optional[Union[str, os.PathLike]] = None,
    shuffle: bool = True,
    download: bool = True,
    augment: AugmentArg = False,
    shuffle_seed: Optional[int] = None,
) -> Tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """Loads an image-classification dataset as batched ``tf.data`` pipelines.

    Both pipelines yield ``(images, labels)`` with float32 images of shape
    ``(B, H, W, 3)`` and int32 class ids of shape ``(B,)``. Images are
    decoded, resized bilinearly to ``image_size`` (grey images get their
    channel repeated) and preprocessed inside the pipeline; nothing is
    decoded before iteration starts. The training pipeline is reshuffled
    every epoch in an order fixed by ``seed``; the test pipeline keeps the
    dataset's own order (class by class for image folders, the original
    file order for Fashion-MNIST).

    Data sources:

    - ``"cifar10"``: ``data_dir``, else ``$KERAS_MEDYATE_DATA_DIR``, holding
      the unpacked ``cifar10_jpg/`` tree, ``cifar10_jpg.tar.gz`` or the
      standard Python release ``cifar-10-batches-py/`` (also under
      ``cifar10/``). A tarball is unpacked once into
      ``$KERAS_HOME/keras_medyate/datasets/`` (default
      ``~/.keras/keras_medyate/datasets/``) and reused. Otherwise Keras' own
      cache of ``keras.datasets.cifar10.load_data()``, else that download;
      last, with a warning, the 6,000-image subset shipped with the package
      (500 training and 100 test images per class).
    - ``"fashion_mnist"``: IDX files in ``data_dir``, else in
      ``$KERAS_MEDYATE_DATA_DIR`` (or its ``fashion-mnist/`` sub-folder),
      else in ``/usr/share/datasets/fashion-mnist`` (Debian package
      ``dataset-fashion-mnist``), else downloaded by
      ``keras.datasets.fashion_mnist.load_data()``.
    - ``"folder:/path"``: ``/path/train/<class>/<image>`` and
      ``/path/test/<class>/<image>`` (bmp, gif, jpeg, jpg, png); class
      names are the sorted folder names of ``train/``.

    Example:

    ```python
    import keras_medyate.data

    train_ds, test_ds, info = keras_medyate.data.load(
        "cifar10", image_size=96, train_per_class=10, test_per_class=10)
    images, labels = next(iter(train_ds))
    print(info.num_classes, images.shape)  # 10 (32, 96, 96, 3)
    ```

    Args:
        name: ``"cifar10"``, ``"fashion_mnist"`` or
            ``"folder:/path/with/train/and/test"``.
        image_size: Output size, an int (square) or ``(height, width)``.
        batch_size: Images per batch (the last batch may be smaller).
        train_per_class: Keep this many training images per class, chosen
            by a shuffle seeded with ``seed``; ``None`` or ``"all"`` keeps all.
        test_per_class: Same for the test split.
        seed: Seed of the per-class selection and of the training shuffle.
            The same seed gives the same images and the same sequence of
            epoch orders (TensorFlow's global seed, if set, also enters the
            shuffle). ``None`` means non-reproducible.
        preprocess: ``"tiny_training"`` maps pixels from ``[0, 255]`` to
            ``[-1, 1]`` (``x / 127.5 - 1``, see :func:`scale_to_unit_range`);
            ``None`` keeps ``[0, 255]``; a callable is applied to each
            float32 image batch inside the pipeline (it must be traceable by
            ``tf.function``).
        data_dir: Local folder holding the dataset (see above). When given,
            it must contain the data: nothing else is tried.
        shuffle: Whether to shuffle the training pipeline.
        download: Whether Keras may download the dataset as a last resort.
        shuffle_seed: Seed of the training pipeline's epoch orders and
            augmentation draws, when they should vary while the images stay
            the same (e.g. one per run of a comparison). Defaults to ``seed``.
        augment: Training-split augmentation: ``False`` (default), ``True``
            (random resized crop of 8–100 % of the area + horizontal flip,
            the authors' recipe without colour jitter) or an
            :class:`Augmentation`. The test split is never augmented.

    Returns:
        ``(train_ds, test_ds, info)``: two ``tf.data.Dataset`` pipelines and
        a :class:`DatasetInfo`.

    Raises:
        ValueError: For an unknown dataset name or ``preprocess`` value, bad
            sizes or counts, a per-class count larger than a class holds, a
            test folder with classes missing from train, or corrupt files.
        FileNotFoundError: If a ``folder:`` dataset or its ``train/`` /
            ``test/`` sub-folder is missing.
        DatasetNotFoundError: (a ``FileNotFoundError``) if the dataset is
            not available locally and cannot be downloaded; the message
            names the argument, environment variable or path to set.
    """
    kind = _canonical_name(name)
    size = normalize_image_size(image_size)
    batch_size = _check_positive_int(batch_size, "batch_size")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ValueError(f"`seed` must be a non-negative int or None; received {seed!r}.")
    preprocess_fn = resolve_preprocess(preprocess)
    augmentation = resolve_augmentation(augment)
    train_per_class = per_class_count(train_per_class, "train_per_class")
    test_per_class = per_class_count(test_per_class, "test_per_class")

    raw: RawDataset
    if kind == "cifar10":
        raw = find_cifar10(data_dir, download=download)
        canonical = "cifar10"
    elif kind == "fashion_mnist":
        raw = find_fashion_mnist(data_dir, download=download)
        canonical = "fashion_mnist"
    else:
        raw = find_folder(name[len(FOLDER_PREFIX) :].strip(), data_dir=data_dir)
        canonical = FOLDER_PREFIX + raw.source

    num_classes = len(raw.class_names)
    try:
        train = subset_per_class(
            raw.train, train_per_class, num_classes, raw.class_names, seed, "train"
        )
        test = subset_per_class(
            raw.test, test_per_class, num_classes, raw.class_names, seed, "test"
        )
    except ValueError as error:
        if raw.source.startswith(SHIPPED_SOURCE):
            raise ValueError(
                f"{error} These are the images of the CIFAR-10 subset shipped with "
                "keras-medyate (no full copy was found or downloaded): set "
                f"${DATA_DIR_ENV} to a full copy, or run `python -c \"import keras; "
                "keras.datasets.cifar10.load_data()\"` once online.") from None
        raise

    if shuffle_seed is None:
        shuffle_seed = seed
    elif isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, (int, np.integer)) \
            or shuffle_seed < 0:
        raise ValueError(
            f"`shuffle_seed` must be a non-negative int or None; received {shuffle_seed!r}.")
    train_ds = build_pipeline(train, size, batch_size, shuffle, shuffle_seed, preprocess_fn,
                              augmentation)
    test_ds = build_pipeline(test, size, batch_size, False, seed, preprocess_fn)
    info = DatasetInfo(
        name=canonical,
        class_names=tuple(raw.class_names),
        num_classes=num_classes,
        num_train=len(train),
        num_test=len(test),
        image_size=size,
        source=raw.source,
    )
    return train_ds, test_ds, info
