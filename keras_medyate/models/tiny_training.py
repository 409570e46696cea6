"""The tiny-training family as float Keras models: from a file or a preset name.

`from_tiny_training` composes the three steps, each in its own module:
`presets` (a preset name or path → a verified local file), `checkpoint`
(the file → validated nested dicts, numpy only) and `architecture` (those
dicts → a Keras functional model with the dequantized weights). The preset
builders (`mcunet_5fps`, `mobilenetv2_w035`, `proxylessnas_w03`) and the
input scaling the models expect (`preprocess_input`) live here too.

The tiny-training project ("On-Device Training Under 256KB Memory", Lin et al.,
NeurIPS 2022) ships its ImageNet-pretrained MCU models (MCUNet-in1 "5fps",
MobileNetV2-w0.35, ProxylessNAS-w0.3) as int8 `.pkl` checkpoints. The weights
are released by MIT HAN Lab under the MIT license (see `LICENSE.tiny-training`
next to the checkpoints, or the upstream repository
https://github.com/mit-han-lab/tiny-training); keep that notice wherever the
weights or models derived from them are redistributed.
"""

import os
import re

import keras
import numpy as np

from keras_medyate import files
from keras_medyate.models import architecture, checkpoint, presets

__all__ = [
    "from_tiny_training",
    "mcunet_5fps",
    "mobilenetv2_w035",
    "preprocess_input",
    "proxylessnas_w03",
]


def _model_name(path):
    stem = os.path.basename(path).removesuffix(".pkl")
    stem = re.sub(r"[^0-9A-Za-z_]+", "_", stem).strip("_")
    return stem or "tiny_training_model"


def from_tiny_training(path_or_name, include_top=True, classes=None, input_shape=(128, 128, 3),
                       name=None, *, clip="quantized", weights_dir=None, sha256=None):
    """Builds a float Keras functional model from a tiny-training int8 checkpoint.

    The architecture (kernel sizes, strides, depthwise/grouped convolutions,
    residual connections, activation clipping) is read from the checkpoint, so
    every model of the family (MCUNet-5fps, MobileNetV2-w0.35,
    ProxylessNAS-w0.3, ...) is supported without per-model code. Weights are
    dequantized with the stored per-channel scales. Inputs are RGB images scaled
    to `[-1, 1]` (see `preprocess_input`).

    Layer names (`i` is the 0-based index of `checkpoint["blocks"]`):

    ```
    first_conv_pad (stride 2 only), first_conv, first_conv_relu,
    block{i}_expand, block{i}_expand_relu,            # pointwise1 (if any)
    block{i}_depthwise_pad (stride 2 only), block{i}_depthwise,
    block{i}_depthwise_relu,
    block{i}_project,                                 # pointwise2 (linear)
    block{i}_shortcut (only for a shortcut conv), block{i}_add,  # residual
    feature_mix, feature_mix_relu,                    # if present
    global_pool, classifier (Dense), predictions (Softmax)
    ```

    The model contains no BatchNormalization layers (batch norm is folded into
    the convolution biases of the checkpoint).

    The weights are released by MIT HAN Lab under the MIT license
    (`LICENSE.tiny-training`); keep that notice wherever the weights, or a
    model saved from this function, are redistributed.

    Example:
        >>> import numpy as np
        >>> from keras_medyate.models import from_tiny_training, preprocess_input
        >>> model = from_tiny_training("mcunet_5fps")   # preset name or .pkl path
        >>> images = np.random.randint(0, 256, (2, 128, 128, 3), dtype=np.uint8)
        >>> model.predict(preprocess_input(images), verbose=0).shape
        (2, 1000)
        >>> from_tiny_training("mcunet_5fps", include_top=False).output_shape
        (None, 160)
        >>> from_tiny_training("mcunet_5fps", classes=10).output_shape
        (None, 10)

    Args:
        path_or_name: str or path-like. Path of a tiny-training `.pkl` file,
            or a preset name of `keras_medyate.models.presets.PRESETS` (`"mcunet_5fps"`,
            `"mobilenetv2_w035"`, `"proxylessnas_w03"`), which is resolved
            with `keras_medyate.models.presets.resolve_weights` (local
            directory, cache, then a checksummed download).
        include_top: bool. If True, end with the classifier and a softmax layer
            named `predictions`. If False, the output is the global-average-pooled
            feature vector (layer `global_pool`). Defaults to `True`.
        classes: int or None. Number of classes of a fresh classification head.
            `None` keeps the pretrained 1000-way ImageNet head. Any other positive int
            replaces it with a new `Dense` layer named `classifier`
            (Glorot-uniform kernel, zero bias) followed by the softmax. Ignored
            when `include_top` is False. Defaults to `None`.
        input_shape: tuple of 3 ints. `(height, width, 3)` of the input. The
            network is fully convolutional followed by global pooling, so any
            resolution works (the checkpoints were trained at 128x128).
            Defaults to `(128, 128, 3)`.
        name: str or None. Model name. Defaults to the file name, e.g.
            `"mcunet_5fps"`.
        clip: str. How the ReLU of each layer is clipped. `"quantized"` (default)
            clips at the upper end of the layer's stored output quantization
            range, `(127 - y_zero) * y_scale`, reproducing the behaviour of the
            int8 model the checkpoint describes; `"relu6"` clips every ReLU at
            6 (the original float architecture before quantization calibration).
        weights_dir: str, path-like or None. Local directory searched for preset
            files before `$KERAS_MEDYATE_WEIGHTS_DIR` and the cache (see
            `resolve_weights`). Defaults to `None`.
        sha256: str or None. Expected SHA-256 (hex) of the file; checked before
            anything is built. Preset files are always checked against their
            pinned digest; an explicit path is only checked if this is given.
            Defaults to `None`.

    Returns:
        A `keras.Model` (functional) mapping `(batch, H, W, 3)` float images
        in `[-1, 1]` to class probabilities `(batch, classes)`, or to pooled
        features `(batch, channels)` if `include_top` is False.

    Raises:
        FileNotFoundError: If `path_or_name` is neither an existing file nor a
            preset name.
        ValueError: If the checkpoint is corrupt, truncated, fails its checksum
            or is not a tiny-training model (the message names the file and the
            problem), or if an argument is invalid (`classes`,
            `input_shape`, `clip`).
    """
    classes, input_shape = architecture.check_arguments(classes, input_shape, clip)
    path = presets.resolve_weights(path_or_name, weights_dir=weights_dir)
    if sha256 is not None:
        files.verify_sha256(
            path, sha256, what="checkpoint",
            advice="The file is corrupt, truncated or a different checkpoint; download it "
                   "again or pass the digest of the file you mean to load.")
    data = checkpoint.load_tiny_training_checkpoint(path)
    if name is None:
        name = presets.preset_name_for(path_or_name) or _model_name(path)
    return architecture.build(data, path, include_top=include_top, classes=classes,
                              input_shape=input_shape, name=name, clip=clip)


def _from_preset(preset, weights, kwargs):
    source = preset if weights is None else presets.check_preset_file(preset, weights)
    kwargs.setdefault("name", preset)
    return from_tiny_training(source, **kwargs)


def mcunet_5fps(weights=None, **kwargs):
    """MCUNet-in1 ("mcunet-5fps"), ImageNet-pretrained at 128x128, as a float Keras model.

    The weights are MIT-licensed by MIT HAN Lab (tiny-training); keep the
    notice (`LICENSE.tiny-training`) wherever they are redistributed.

    Example:
        >>> from keras_medyate.models import mcunet_5fps
        >>> mcunet_5fps(classes=10).output_shape
        (None, 10)

    Args:
        weights: str, path-like or None. Path of `mcunet-5fps.pkl`; it must match the pinned
            SHA-256. `None` resolves the file with
            `keras_medyate.models.resolve_weights`.
        **kwargs: keyword arguments of
            `keras_medyate.models.from_tiny_training` (`include_top`,
            `classes`, `input_shape`, `name`, `clip`, `weights_dir`).

    Returns:
        A `keras.Model`.

    Raises:
        FileNotFoundError: If `weights` is given but does not exist.
        ValueError: If the file fails its checksum or is malformed, or if an
            argument is invalid.
    """
    return _from_preset("mcunet_5fps", weights, kwargs)


def mobilenetv2_w035(weights=None, **kwargs):
    """MobileNetV2 width 0.35, ImageNet-pretrained at 128x128, as a float Keras model.

    The weights are MIT-licensed by MIT HAN Lab (tiny-training); keep the
    notice (`LICENSE.tiny-training`) wherever they are redistributed.

    Example:
        >>> from keras_medyate.models import mobilenetv2_w035
        >>> mobilenetv2_w035(include_top=False).output_shape
        (None, 112)

    Arguments, result and errors are those of `mcunet_5fps`, with
    `weights` the path of `mbv2-w0.35.pkl`.
    """
    return _from_preset("mobilenetv2_w035", weights, kwargs)


def proxylessnas_w03(weights=None, **kwargs):
    """ProxylessNAS width 0.3, ImageNet-pretrained, as a float Keras model.

    No SHA-256 is pinned for this file: it is only checked for being a
    well-formed tiny-training checkpoint, and a `UserWarning` says so. The
    weights are MIT-licensed by MIT HAN Lab (tiny-training); keep the notice
    (`LICENSE.tiny-training`) wherever they are redistributed.

    Example:
        >>> from keras_medyate.models import proxylessnas_w03
        >>> model = proxylessnas_w03(weights="proxyless-w0.3.pkl")  # doctest: +SKIP

    Arguments, result and errors are those of `mcunet_5fps`, with
    `weights` the path of `proxyless-w0.3.pkl` (checked for being a
    well-formed checkpoint only).
    """
    return _from_preset("proxylessnas_w03", weights, kwargs)


def preprocess_input(images):
    """Scales RGB images from `[0, 255]` to the `[-1, 1]` range the models expect.

    Computes `images / 127.5 - 1` in float32. Works on numpy arrays, Python
    lists and TensorFlow (or other backend) tensors; numpy input gives a numpy
    output, tensor input a tensor output.

    Example:
        >>> import numpy as np
        >>> from keras_medyate.models import preprocess_input
        >>> preprocess_input(np.array([[0, 127.5, 255]], dtype=np.float32))
        array([[-1.,  0.,  1.]], dtype=float32)

    Args:
        images: array, list or tensor. RGB pixel values in `[0, 255]` (uint8 or
            float), any shape ending in the channel axis.

    Returns:
        A float32 array or tensor of the same shape with values in `[-1, 1]`.

    Raises:
        TypeError: If `images` is not numeric.
    """
    if isinstance(images, (np.ndarray, list, tuple, int, float, np.generic)):
        array = np.asarray(images)
        if array.dtype.kind not in "iufb":
            raise TypeError(
                f"preprocess_input expects numeric pixel values, got dtype {array.dtype}."
            )
        return array.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    tensor = keras.ops.cast(images, "float32")
    return tensor / 127.5 - 1.0
