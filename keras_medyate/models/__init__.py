"""Pretrained backbones of the MCUNet / tiny-training family as float Keras models.

The checkpoints are MIT HAN Lab's int8 ImageNet models released with tiny-training
(MIT license, `LICENSE.tiny-training`; keep the notice when redistributing them).
One module per step: `presets` (a preset name → a verified local file),
`checkpoint` (the file → validated nested dicts), `architecture` (those dicts →
a Keras model), and `tiny_training` (the entry points that compose them);
`bounded_relu` holds the one layer the models add to Keras' (`BoundedReLU`,
registered for `.keras` files: import `keras_medyate` before loading one).

Example:
    >>> from keras_medyate.models import mcunet_5fps, preprocess_input
    >>> model = mcunet_5fps(classes=10)          # fresh 10-way head
    >>> model.output_shape
    (None, 10)
"""

from keras_medyate.models.bounded_relu import BoundedReLU
from keras_medyate.models.checkpoint import load_tiny_training_checkpoint
from keras_medyate.models.presets import PRESETS, resolve_weights, weights_cache_dir
from keras_medyate.models.tiny_training import (
    from_tiny_training,
    mcunet_5fps,
    mobilenetv2_w035,
    preprocess_input,
    proxylessnas_w03,
)

__all__ = [
    "PRESETS",
    "BoundedReLU",
    "from_tiny_training",
    "load_tiny_training_checkpoint",
    "mcunet_5fps",
    "mobilenetv2_w035",
    "preprocess_input",
    "proxylessnas_w03",
    "resolve_weights",
    "weights_cache_dir",
]
