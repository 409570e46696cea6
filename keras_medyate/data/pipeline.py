"""Building blocks shared by the dataset loaders.

A loader produces one `Split` per subset (train / test): either image
file paths or an in-memory uint8 array, plus integer labels. Per-class
subsetting happens on these cheap descriptions; `build_pipeline` then
turns a split into a batched `tf.data` pipeline that decodes, resizes,
preprocesses and prefetches.
"""

import dataclasses
import os
import zlib
from typing import List, Optional

import numpy as np
import tensorflow as tf

from keras_medyate.data.augmentation import batch_transform, random_resized_crop

#: File suffixes treated as images (same set as Keras' directory loader).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


@dataclasses.dataclass
class Split:
    """One subset of a dataset, before decoding.

    Exactly one of `paths` and `images` is set.

    Attributes:
        labels: int32 array. Class ids, shape `(N,)`.
        paths: object array of str or None. Image file paths, one per label.
        images: uint8 array or None. Images of shape `(N, H, W)`,
            `(N, H, W, 1)` or `(N, H, W, 3)`.
    """

    labels: np.ndarray
    paths: Optional[np.ndarray] = None
    images: Optional[np.ndarray] = None

    def __len__(self):
        return int(len(self.labels))

    def take(self, indices):
        """Returns the split restricted to `indices` (in that order)."""
        return Split(
            labels=self.labels[indices],
            paths=None if self.paths is None else self.paths[indices],
            images=None if self.images is None else self.images[indices],
        )


@dataclasses.dataclass
class RawDataset:
    """What a dataset source found: class names, both splits and the origin.

    Attributes:
        class_names: list of str. Class names, index = label id.
        train: `Split`. The training split.
        test: `Split`. The test split.
        source: str. Human-readable origin (a path or a download description).
    """

    class_names: List[str]
    train: Split
    test: Split
    source: str


def normalize_image_size(image_size):
    """Turns `128` or `(128, 160)` into a `(height, width)` pair.

    Raises:
        ValueError: If the value is not one or two positive integers.
    """
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair of "
            f"positive ints; received {image_size!r}."
        )
    if min(size) <= 0:
        raise ValueError(f"`image_size` must be positive; received {image_size!r}.")
    return size


def subset_per_class(split, per_class, num_classes, class_names, seed, split_name):
    """Keeps `per_class` examples of every class, chosen by a seeded shuffle.

    For each class the examples' indices are permuted with
    `numpy.random.default_rng((seed, crc32(split_name), class_id))` and the first
    `per_class` are kept, so the choice for one class does not depend on
    the other classes. The kept examples are returned in their original
    order. `per_class=None` returns the split unchanged.

    Args:
        split: `Split`. The examples to choose from.
        per_class: int or None. Examples kept per class; None keeps all.
        num_classes: int. Number of classes (labels are `0 .. num_classes - 1`).
        class_names: sequence of str. Class names, for messages.
        seed: int or None. Seed of the choice; None is not reproducible.
        split_name: str. `"train"` or `"test"`: enters the seed and the messages.

    Returns:
        The kept examples as a `Split`, in their original order.

    Raises:
        ValueError: If `per_class` is not a positive int or a class has
            fewer than `per_class` examples.
    """
    if per_class is None:
        return split
    if (
        isinstance(per_class, bool)
        or not isinstance(per_class, (int, np.integer))
        or per_class <= 0
    ):
        raise ValueError(
            f"`{split_name}_per_class` must be a positive int or None; received {per_class!r}."
        )
    kept = []
    for class_id in range(num_classes):
        indices = np.flatnonzero(split.labels == class_id)
        if len(indices) < per_class:
            counts = np.bincount(split.labels, minlength=num_classes)
            raise ValueError(
                f"`{split_name}_per_class={per_class}` is larger than the "
                f"{len(indices)} {split_name} images of class "
                f"{class_names[class_id]!r}. The smallest class has "
                f"{int(counts.min())} {split_name} images; pass at most that "
                f"or 'all' for every image."
            )
        if seed is None:
            rng = np.random.default_rng()
        else:
            stream = zlib.crc32(split_name.encode())
            rng = np.random.default_rng((int(seed), stream, class_id))
        kept.append(rng.permutation(indices)[:per_class])
    return split.take(np.sort(np.concatenate(kept)))


def list_image_folder(root, class_names=None):
    """Lists `root/<class>/<image>` files without decoding them.

    Files are sorted by class then by name; hidden files and files without
    an image suffix are ignored.

    Args:
        root: str. Folder whose sub-folders are the classes.
        class_names: sequence of str or None. Class order to use (e.g. the
            train folder's classes for the test folder). Defaults to the
            sorted sub-folder names.

    Returns:
        `(class_names, split)`: the class order used and the file split.

    Raises:
        FileNotFoundError: If `root` is not a folder.
        ValueError: If `root` has no class folder, or (when
            `class_names` is given) has class folders not in it.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder not found: {root}")
    found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise ValueError(f"{root} has no class sub-folders (expected {root}/<class>/<image>).")
    if class_names is None:
        class_names = found
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise ValueError(
                f"{root} has class folders that are not among the training "
                f"classes: {unknown}. Training classes: {list(class_names)}."
            )
    class_index = {name: i for i, name in enumerate(class_names)}
    paths = []
    labels = []
    for name in found:
        folder = os.path.join(root, name)
        files = sorted(
            e.name
            for e in os.scandir(folder)
            if e.is_file()
            and not e.name.startswith(".")
            and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        paths.extend(os.path.join(folder, f) for f in files)
        labels.extend([class_index[name]] * len(files))
    split = Split(
        labels=np.asarray(labels, dtype=np.int32),
        paths=np.asarray(paths, dtype=object),
    )
    return list(class_names), split


def build_pipeline(split, image_size, batch_size, shuffle, seed, preprocess, augmentation=None):
    """Turns a split into a batched, prefetched `tf.data` pipeline.

    Shuffling (when enabled) acts on file paths or indices, before any
    decoding, with a full-size buffer, `seed` and
    `reshuffle_each_iteration=True`: every epoch has a new order, and the
    sequence of orders is the same for every pipeline built with the same
    seed. Images are decoded to RGB, resized bilinearly to `image_size`
    (grey images get their channel repeated), batched, passed to
    `preprocess` and prefetched.

    Args:
        split: `Split`. The examples (file paths or in-memory images).
        image_size: tuple of 2 ints. `(height, width)` of the output images.
        batch_size: int. Images per batch.
        shuffle: bool. Whether to reshuffle every epoch.
        seed: int or None. Seed of the shuffle and of the augmentation draws.
        preprocess: callable or None. Applied to each float32 image batch.
        augmentation: `Augmentation` or None. Training-time augmentation.
            Defaults to `None`.

    Returns:
        A dataset of `(images, labels)`: float32 `(B, H, W, 3)` and
        int32 `(B,)`.
    """
    height, width = image_size
    n = len(split)
    labels = split.labels.astype(np.int32)
    crop = augmentation is not None and augmentation.crop_scale is not None

    def resize(image, crop_seed):
        grey = image.shape[-1] == 1
        if crop:
            image = random_resized_crop(image, (height, width), augmentation, crop_seed)
        elif image.shape[0] == height and image.shape[1] == width:
            image = tf.cast(image, tf.float32)
        else:
            image = tf.image.resize(image, (height, width), method="bilinear")
        if grey:
            image = tf.repeat(image, 3, axis=-1)
        image.set_shape((height, width, 3))
        return image

    if split.paths is not None:
        ds = tf.data.Dataset.from_tensor_slices((split.paths.astype(str).tolist(), labels))

        def load(example, crop_seed):
            path, label = example
            data = tf.io.read_file(path)
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return resize(image, crop_seed), label

    else:
        images = split.images
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(
                "In-memory images must have shape (N, H, W), (N, H, W, 1) or "
                f"(N, H, W, 3); got {split.images.shape}."
            )
        images = tf.constant(images.astype(np.uint8, copy=False))
        label_tensor = tf.constant(labels)
        ds = tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int64))

        def load(index, crop_seed):
            return resize(tf.gather(images, index), crop_seed), tf.gather(label_tensor, index)

    if shuffle and n > 1:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if crop:
        # One stateless seed pair per example, new every epoch, fixed by `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    else:
        seeds = tf.data.Dataset.from_tensors(tf.zeros((2,), tf.int64)).repeat()
    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    transform = None if augmentation is None else batch_transform(augmentation, seed)
    if transform is not None:
        # Sequential: the Keras layers draw from a seed generator, in batch order.
        ds = ds.map(lambda x, y: (transform(x), y))
    if preprocess is not None:
        ds = ds.map(
            lambda x, y: (tf.cast(preprocess(x), tf.float32), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return ds.prefetch(tf.data.AUTOTUNE)
