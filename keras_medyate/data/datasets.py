"""`load`: batched `tf.data` pipelines for the supported datasets."""

import dataclasses
from typing import Tuple

import numpy as np

from keras_medyate.data.augmentation import resolve_augmentation
from keras_medyate.data.cifar10 import SHIPPED_SOURCE, find_cifar10
from keras_medyate.data.errors import DATA_DIR_ENV
from keras_medyate.data.fashion_mnist import find_fashion_mnist
from keras_medyate.data.folder import find_folder
from keras_medyate.data.pipeline import (
    build_pipeline,
    normalize_image_size,
    subset_per_class,
)
from keras_medyate.data.preprocessing import resolve_preprocess

_ALIASES = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "fashion_mnist": "fashion_mnist",
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
}
FOLDER_PREFIX = "folder:"
#: The forms accepted for the `name` argument of `load`.
ACCEPTED_NAMES = ("cifar10", "fashion_mnist", "folder:/path/with/train/and/test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Describes what `load` returned.

    Attributes:
        name: str. Canonical dataset name: `"cifar10"`, `"fashion_mnist"` or
            `"folder:<absolute path>"` (can be passed back to `load`).
        class_names: tuple of str. Class names; label `i` is `class_names[i]`.
        num_classes: int. `len(class_names)`.
        num_train: int. Number of training images (after per-class subsetting).
        num_test: int. Number of test images (after per-class subsetting).
        image_size: tuple of 2 ints. `(height, width)` of the returned images.
        source: str. Where the data came from: a folder path, or a description
            of the Keras download.
    """

    name: str
    class_names: Tuple[str, ...]
    num_classes: int
    num_train: int
    num_test: int
    image_size: Tuple[int, int]
    source: str


def check_name(name):
    """Returns the canonical form of a dataset name (`"folder:"` for a folder).

    Raises:
        ValueError: For a name `load` does not accept (the message lists
            the accepted forms).
    """
    return _canonical_name(name)


def _canonical_name(name):
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


def _check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{arg}` must be a positive int; received {value!r}.")
    return int(value)


def per_class_count(value, arg):
    """A per-class image count: a positive int, or `None` / `"all"` for every image.

    Strings of digits (from a command line) are accepted too.

    Args:
        value: int, str or None. The count given.
        arg: str. The argument's name, for the message.

    Returns:
        The count as an int, or None for every image.

    Raises:
        ValueError: For anything else, naming `arg` and the value received.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"`{arg}` must be a positive int or 'all' (every image); received {value!r}.")
    return int(value)


def load(name, image_size=128, batch_size=32, train_per_class=None, test_per_class=None, seed=0,
         preprocess="tiny_training", data_dir=None, shuffle=True, download=True, augment=False,
         shuffle_seed=None):
    """Loads an image-classification dataset as batched `tf.data` pipelines.

    Both pipelines yield `(images, labels)` with float32 images of shape
    `(B, H, W, 3)` and int32 class ids of shape `(B,)`. Images are
    decoded, resized bilinearly to `image_size` (grey images get their
    channel repeated) and preprocessed inside the pipeline; nothing is
    decoded before iteration starts. The training pipeline is reshuffled
    every epoch in an order fixed by `seed`; the test pipeline keeps the
    dataset's own order (class by class for image folders, the original
    file order for Fashion-MNIST).

    Data sources:

    - `"cifar10"`: `data_dir`, else `$KERAS_MEDYATE_DATA_DIR`, holding
      the unpacked `cifar10_jpg/` tree, `cifar10_jpg.tar.gz` or the
      standard Python release `cifar-10-batches-py/` (also under
      `cifar10/`). A tarball is unpacked once into
      `$KERAS_HOME/keras_medyate/datasets/` (default
      `~/.keras/keras_medyate/datasets/`) and reused. Otherwise Keras' own
      cache of `keras.datasets.cifar10.load_data()`, else that download;
      last, with a warning, the 6,000-image subset shipped with the package
      (500 training and 100 test images per class).
    - `"fashion_mnist"`: IDX files in `data_dir`, else in
      `$KERAS_MEDYATE_DATA_DIR` (or its `fashion-mnist/` sub-folder),
      else in `/usr/share/datasets/fashion-mnist` (Debian package
      `dataset-fashion-mnist`), else downloaded by
      `keras.datasets.fashion_mnist.load_data()`.
    - `"folder:/path"`: `/path/train/<class>/<image>` and
      `/path/test/<class>/<image>` (bmp, gif, jpeg, jpg, png); class
      names are the sorted folder names of `train/`.

    Example:

    ```python
    import keras_medyate.data

    train_ds, test_ds, info = keras_medyate.data.load(
        "cifar10", image_size=96, train_per_class=10, test_per_class=10)
    images, labels = next(iter(train_ds))
    print(info.num_classes, images.shape)  # 10 (32, 96, 96, 3)
    ```

    Args:
        name: str. `"cifar10"`, `"fashion_mnist"` or
            `"folder:/path/with/train/and/test"`.
        image_size: int or tuple of 2 ints. Output size, square or
            `(height, width)`. Defaults to `128`.
        batch_size: int. Images per batch (the last batch may be smaller).
            Defaults to `32`.
        train_per_class: int, `"all"` or None. Keep this many training images per class, chosen
            by a shuffle seeded with `seed`; `None` or `"all"` keeps all. Defaults
            to `None`.
        test_per_class: int, `"all"` or None. Same for the test split.
            Defaults to `None`.
        seed: int or None. Seed of the per-class selection and of the training shuffle.
            The same seed gives the same images and the same sequence of
            epoch orders (TensorFlow's global seed, if set, also enters the
            shuffle). `None` means non-reproducible. Defaults to `0`.
        preprocess: str, None or callable. `"tiny_training"` maps pixels from `[0, 255]` to
            `[-1, 1]` (`x / 127.5 - 1`, see `scale_to_unit_range`);
            `None` keeps `[0, 255]`; a callable is applied to each
            float32 image batch inside the pipeline (it must be traceable by
            `tf.function`). Defaults to `"tiny_training"`.
        data_dir: str, path-like or None. Local folder holding the dataset
            (see above). When given, it must contain the data: nothing else
            is tried. Defaults to `None`.
        shuffle: bool. Whether to shuffle the training pipeline. Defaults to
            `True`.
        download: bool. Whether Keras may download the dataset as a last
            resort. Defaults to `True`.
        shuffle_seed: int or None. Seed of the training pipeline's epoch orders and
            augmentation draws, when they should vary while the images stay
            the same (e.g. one per run of a comparison). Defaults to `seed`.
        augment: bool, None or `Augmentation`. Training-split augmentation:
            `False` (default), `True`
            (random resized crop of 8–100 % of the area + horizontal flip,
            the authors' recipe without colour jitter) or an
            `Augmentation`. The test split is never augmented.

    Returns:
        `(train_ds, test_ds, info)`: two `tf.data.Dataset` pipelines and
        a `DatasetInfo`.

    Raises:
        ValueError: For an unknown dataset name or `preprocess` value, bad
            sizes or counts, a per-class count larger than a class holds, a
            test folder with classes missing from train, or corrupt files.
        FileNotFoundError: If a `folder:` dataset or its `train/` /
            `test/` sub-folder is missing.
        DatasetNotFoundError: (a `FileNotFoundError`) if the dataset is
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
