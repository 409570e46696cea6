"""Training-time augmentation: random resized crop, horizontal flip, colour jitter.

The recipe of the MeDyate / TraDy authors' code (timm's training transform):
a random crop covering 8–100 % of the image area with an aspect ratio in
[3/4, 4/3], resized to the output size; a horizontal flip with probability
1/2; optionally a colour jitter. It is applied to the training split only.

Flip and colour jitter are Keras preprocessing layers (`keras.layers.RandomFlip`,
`keras.layers.RandomColorJitter`) applied to batches. Keras 3 has no random
*resized* crop layer (`RandomCrop` keeps the scale, `RandomZoom` keeps the
aspect ratio and pads), so the crop uses TensorFlow's own
`tf.image.stateless_sample_distorted_bounding_box` + `tf.image.crop_and_resize`
on each decoded image, before it is resized: a zoomed-in crop of a large
photo keeps its resolution.

Every random draw is seeded: the same seed gives the same augmented images,
epoch after epoch in the same sequence, and each epoch draws new ones.

Example:

```python
import keras_medyate.data

train_ds, test_ds, info = keras_medyate.data.load(
    "fashion_mnist", image_size=32, train_per_class=4, test_per_class=2,
    augment=keras_medyate.data.Augmentation(color_jitter=0.4))
```
"""

import dataclasses
from typing import Optional, Tuple

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What to do to each training image.

    Attributes:
        crop_scale: tuple of 2 floats or None. `(min, max)` fraction of the image
            area a random crop covers; `None` disables the crop. Defaults to
            `(0.08, 1.0)`.
        crop_ratio: tuple of 2 floats. `(min, max)` aspect ratio (width / height)
            of the crop.
            Defaults to `(3/4, 4/3)`.
        horizontal_flip: bool. Flip left-right with probability 1/2.
            Defaults to `True`.
        color_jitter: float. Strength of a random brightness, contrast and
            saturation change (0 disables it; the authors use 0.4).
            Defaults to `0.0`.
    """

    crop_scale: Optional[Tuple[float, float]] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = True
    color_jitter: float = 0.0

    def __post_init__(self):
        if self.crop_scale is not None:
            low, high = self.crop_scale
            if not 0 < low <= high <= 1:
                raise ValueError(
                    f"`crop_scale` must be (min, max) with 0 < min <= max <= 1; received "
                    f"{self.crop_scale!r}.")
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise ValueError(
                f"`crop_ratio` must be (min, max) with 0 < min <= max; received "
                f"{self.crop_ratio!r}.")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(
                f"`color_jitter` must be in [0, 1); received {self.color_jitter!r}.")


def resolve_augmentation(augment):
    """Turns the `augment` argument of `load` into an `Augmentation` or None.

    Raises:
        ValueError: If `augment` is neither a bool, None nor an `Augmentation`.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        return Augmentation()
    if isinstance(augment, Augmentation):
        return augment
    raise ValueError(
        "`augment` must be True (random resized crop + horizontal flip), False/None, or a "
        f"keras_medyate.data.Augmentation; received {augment!r}.")


def random_resized_crop(image, size, augmentation, seed):
    """Crops a random box of one decoded image and resizes it to `size`.

    Args:
        image: tensor. A `(H, W, C)` image (any dtype).
        size: tuple of 2 ints. `(height, width)` of the output.
        augmentation: `Augmentation`. Its crop scale and ratio are used.
        seed: int64 tensor of shape `(2,)`. The stateless seed of this draw.

    Returns:
        float32 `(height, width, C)` image.
    """
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=augmentation.crop_ratio,
        area_range=augmentation.crop_scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, extent)
    return tf.image.resize(crop, size, method="bilinear")


def batch_transform(augmentation, seed, value_range=(0.0, 255.0)):
    """The batch-wise part (flip, colour jitter) as Keras preprocessing layers.

    Returns:
        A callable on float32 image batches, or None when there is nothing to do.
    """
    layers = []
    if augmentation.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augmentation.color_jitter > 0:
        strength = augmentation.color_jitter
        layers.append(keras.layers.RandomColorJitter(
            value_range=value_range, brightness_factor=strength, contrast_factor=strength,
            # Keras' saturation factor is 0.5 for "unchanged", 0 grey, 1 saturated.
            saturation_factor=(0.5 - strength / 2, 0.5 + strength / 2), seed=seed))
    if not layers:
        return None

    def transform(images):
        for layer in layers:
            images = layer(images, training=True)
        # The contrast change can leave the value range; pixels stay pixels.
        return tf.clip_by_value(images, value_range[0], value_range[1])

    return transform
