"""Float Keras models built from the int8 checkpoints of MIT HAN Lab's tiny-training.

The tiny-training project ("On-Device Training Under 256KB Memory", Lin et al.,
NeurIPS 2022) ships its ImageNet-pretrained MCU models (MCUNet-in1 "5fps",
MobileNetV2-w0.35, ProxylessNAS-w0.3) as ``.pkl`` files. Such a file is a zip
container (PyTorch's serialization layout) whose ``*/data.pkl`` member is a plain
pickle of nested dicts and lists of numpy arrays describing a quantized
(int8 weights, int32 biases, per-channel scales) inverted-residual network.

This module reads that file with numpy and the standard library only, rebuilds
the architecture it describes as a Keras 3 functional model, and loads the
dequantized (float32) weights:

* convolution weights: ``w_float = w_int8 * w_scales[out]``, converted from the
  PyTorch layout ``(out, in / groups, kh, kw)`` to Keras' ``(kh, kw, in, out)``
  (``(kh, kw, in, multiplier)`` for depthwise convolutions);
* biases: ``b_float = b_int32 * x_scale * w_scales[out]`` (the int32 bias lives in
  the accumulator's scale; batch normalization is already folded into it);
* padding: symmetric ``k // 2`` zeros on each side, as in PyTorch, built with an
  explicit ``ZeroPadding2D`` followed by a ``padding="valid"`` convolution
  (Keras' ``"same"`` pads asymmetrically on stride-2 layers);
* activations: the checkpoints store no activation function (``act`` is
  ``None``); the clipping is encoded in each layer's *output* quantization
  range. A layer whose output zero point is the int8 minimum (-128) has the
  real range ``[0, 255 * y_scale]``: it is a clipped ReLU,
  ``ReLU(max_value=255 * y_scale)``. That upper bound is exactly 6 (ReLU6) for
  11 of the 28 ReLU layers of MCUNet-5fps (9 of 34 in MobileNetV2-w0.35) and
  between 2.07 and 6 for the others (quantization calibration tightened the
  original ReLU6 to the observed maximum). Layers with any other zero point are
  linear (the block projections and the classifier). Checked numerically: fed
  the int8 network's own inputs, every layer of the float model reproduces the
  int8 outputs to within half a quantization step, and on natural images the
  tightened bounds are essentially never reached, so ``clip="relu6"`` gives the
  same predictions.

The weights are released by MIT HAN Lab under the MIT license (see
``LICENSE.tiny-training`` next to the checkpoints, or the upstream repository
https://github.com/mit-han-lab/tiny-training); keep that notice wherever the
weights or models derived from them are redistributed.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import pickle
import re
import zipfile
import zlib
from typing import Any

import keras
import numpy as np

__all__ = [
    "from_tiny_training",
    "load_tiny_training_checkpoint",
    "preprocess_input",
]

# --------------------------------------------------------------------------------------
# Reading the checkpoint (numpy + standard library only)
# --------------------------------------------------------------------------------------

# Globals a tiny-training checkpoint may legitimately reference. Anything else
# (in particular ``torch`` rebuild functions, ``os.system``, ``eval``...) is refused:
# unpickling arbitrary callables would execute arbitrary code.
_SAFE_BUILTINS = frozenset(
    {
        "bool", "int", "float", "complex", "str", "bytes", "bytearray",
        "tuple", "list", "dict", "set", "frozenset", "slice", "range",
    }
)
_SAFE_NUMPY_NAMES = frozenset(
    {"_reconstruct", "ndarray", "dtype", "scalar", "frombuffer", "_frombuffer"}
)
_SAFE_OTHER = frozenset({("_codecs", "encode"), ("collections", "OrderedDict")})


def _numpy_module(module: str) -> Any:
    """Imports ``module``, mapping numpy 1's ``numpy.core`` to numpy 2's ``numpy._core``."""
    candidates = [module]
    if module == "numpy.core" or module.startswith("numpy.core."):
        moved = "numpy._core" + module[len("numpy.core"):]
        candidates = [moved, module]
    elif module == "numpy._core" or module.startswith("numpy._core."):
        # A file written under numpy 2 read under numpy 1.
        candidates = [module, "numpy.core" + module[len("numpy._core"):]]
    for candidate in candidates:
        try:
            return importlib.import_module(candidate)
        except ImportError:
            continue
    raise pickle.UnpicklingError(f"numpy module {module!r} is not available")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves numpy array machinery and plain builtins."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _SAFE_OTHER:
            return super().find_class(module, name)
        if (module == "numpy" or module.startswith("numpy.")) and name in _SAFE_NUMPY_NAMES:
            return getattr(_numpy_module(module), name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a tiny-training MCU checkpoint only "
            "references numpy arrays and plain Python containers"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(
            "the pickle references external tensor storage (a regular PyTorch state dict?); "
            "tiny-training MCU checkpoints hold plain numpy arrays"
        )


def _read_data_pickle(path: str) -> bytes:
    """Returns the bytes of the ``*/data.pkl`` member of the zip container at ``path``."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                info for info in archive.infolist()
                if info.filename == "data.pkl" or info.filename.endswith("/data.pkl")
            ]
            if not members:
                names = [info.filename for info in archive.infolist()][:10]
                raise ValueError(
                    f"Checkpoint {path!r} is a zip archive without a '*/data.pkl' member "
                    f"(members: {names}); it is not a tiny-training checkpoint."
                )
            if len(members) > 1:
                raise ValueError(
                    f"Checkpoint {path!r} holds several data.pkl members "
                    f"({[m.filename for m in members]}); expected exactly one."
                )
            return archive.read(members[0])
    except zipfile.BadZipFile as err:
        raise ValueError(
            f"Checkpoint {path!r} is not a valid zip container ({err}); the file is corrupt "
            "or truncated. Delete it and download it again (or pass the right file)."
        ) from err
    except (zipfile.LargeZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(
            f"Checkpoint {path!r} could not be read as a zip container ({type(err).__name__}: "
            f"{err}); the file is corrupt or truncated. Delete it and download it again."
        ) from err


def load_tiny_training_checkpoint(path: str | os.PathLike) -> dict:
    """Reads and validates a tiny-training ``.pkl`` checkpoint into nested dicts.

    Only numpy and the standard library are used; the pickle is read with a
    restricted unpickler that resolves nothing but numpy arrays and plain Python
    containers (references to ``numpy.core`` are mapped to numpy 2's
    ``numpy._core``). The structure is validated (every convolution's weight,
    bias and scale shapes agree with its declared channels, kernel and groups),
    so a malformed file fails here rather than half-way through model building.

    The weights are released by MIT HAN Lab under the MIT license; keep the
    notice (``LICENSE.tiny-training``) wherever they are redistributed.

    Example:
        >>> from keras_medyate.models import load_tiny_training_checkpoint
        >>> from keras_medyate.models.presets import resolve_weights
        >>> ckpt = load_tiny_training_checkpoint(resolve_weights("mcunet_5fps"))
        >>> sorted(ckpt)
        ['blocks', 'classifier', 'feature_mix', 'first_conv']
        >>> ckpt["first_conv"]["params"]["weight"].shape
        (16, 3, 3, 3)

    Args:
        path: Path of the ``.pkl`` file.

    Returns:
        The checkpoint as a dict with keys ``first_conv``, ``blocks`` (a list of
        dicts with ``pointwise1``, ``depthwise``, ``pointwise2``, ``residual``,
        ``se``), ``feature_mix`` and ``classifier``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a zip container, is truncated or corrupt,
            has no ``data.pkl`` member, references anything other than numpy
            arrays, or does not have the structure of a tiny-training model. The
            message names the file and the offending entry.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint file {path!r} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"Checkpoint path {path!r} is a directory; pass the .pkl file itself.")
    payload = _read_data_pickle(path)
    try:
        data = _RestrictedUnpickler(io.BytesIO(payload)).load()
    except Exception as err:
        raise ValueError(
            f"Checkpoint {path!r}: its data.pkl member could not be unpickled "
            f"({type(err).__name__}: {err}); the file is corrupt or not a tiny-training "
            "MCU checkpoint."
        ) from err
    _validate_checkpoint(data, path)
    return data


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _fail(path: str, where: str, what: str) -> None:
    raise ValueError(
        f"Checkpoint {path!r}: {where}: {what}. The file is not a well-formed tiny-training "
        "MCU checkpoint; check that it is the intended file, or download it again."
    )


def _as_pair(value: Any, path: str, where: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    _fail(path, where, f"expected an int or a pair of ints, got {value!r}")
    raise AssertionError  # unreachable


def _check_quant_param(params: dict, key: str, path: str, where: str) -> None:
    if key not in params:
        _fail(path, where, f"missing quantization parameter {key!r} (keys: {sorted(params)})")
    value = params[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        _fail(path, where, f"quantization parameter {key!r} is not a number: {value!r}")
    if not math.isfinite(number) or (key.endswith("scale") and number <= 0):
        _fail(path, where, f"quantization parameter {key!r} has an invalid value {value!r}")


def _validate_conv(entry: Any, path: str, where: str, *, needs_io: bool = True) -> None:
    """Checks that ``entry`` describes a convolution with consistent arrays."""
    if not isinstance(entry, dict):
        _fail(path, where, f"expected a dict describing a convolution, got {type(entry).__name__}")
    for key in ("in_channel", "out_channel", "params"):
        if key not in entry:
            _fail(path, where, f"missing key {key!r} (keys: {sorted(entry)})")
    params = entry["params"]
    if not isinstance(params, dict):
        _fail(path, where + ".params", f"expected a dict, got {type(params).__name__}")
    for key in ("weight", "bias", "w_scales"):
        if key not in params:
            _fail(path, where + ".params", f"missing array {key!r} (keys: {sorted(params)})")
        if not isinstance(params[key], np.ndarray):
            _fail(path, f"{where}.params.{key}",
                  f"expected a numpy array, got {type(params[key]).__name__}")
    for key in ("x_scale", "x_zero", "y_scale", "y_zero"):
        _check_quant_param(params, key, path, where + ".params")
    weight, bias, w_scales = params["weight"], params["bias"], params["w_scales"]
    cin, cout = int(entry["in_channel"]), int(entry["out_channel"])
    groups = int(entry.get("groups", 1) or 1)
    kh, kw = _as_pair(entry.get("kernel_size", 1), path, where + ".kernel_size")
    _as_pair(entry.get("stride", 1), path, where + ".stride")
    if cin <= 0 or cout <= 0 or groups <= 0 or cin % groups or cout % groups:
        _fail(path, where, f"inconsistent channels/groups: in={cin}, out={cout}, groups={groups}")
    if weight.dtype.kind not in "iuf" or weight.ndim != 4:
        _fail(path, where + ".params.weight",
              f"expected a 4-D integer array, got dtype {weight.dtype} shape {weight.shape}")
    expected = (cout, cin // groups, kh, kw)
    if tuple(weight.shape) != expected:
        _fail(path, where + ".params.weight",
              f"shape {tuple(weight.shape)} does not match (out, in/groups, kh, kw) = {expected}")
    if bias.shape != (cout,):
        _fail(path, where + ".params.bias", f"shape {bias.shape} != ({cout},)")
    if w_scales.reshape(-1).shape != (cout,):
        _fail(path, where + ".params.w_scales", f"shape {w_scales.shape} != ({cout},)")
    if not np.all(np.isfinite(w_scales)):
        _fail(path, where + ".params.w_scales", "contains non-finite values")
    if needs_io and "act" in entry and entry["act"] not in (None, "relu", "relu6", "linear"):
        _fail(path, where + ".act",
              f"unsupported activation {entry['act']!r} (supported: None, 'relu', 'relu6')")


def _validate_checkpoint(data: Any, path: str) -> None:
    if not isinstance(data, dict):
        _fail(path, "top level", f"expected a dict, got {type(data).__name__}")
    for key in ("first_conv", "blocks", "classifier"):
        if key not in data:
            _fail(path, "top level", f"missing key {key!r} (keys: {sorted(map(str, data))})")
    _validate_conv(data["first_conv"], path, "first_conv")
    blocks = data["blocks"]
    if not isinstance(blocks, (list, tuple)) or not blocks:
        _fail(path, "blocks", f"expected a non-empty list, got {type(blocks).__name__}")
    channels = int(data["first_conv"]["out_channel"])
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict):
            _fail(path, where, f"expected a dict, got {type(block).__name__}")
        for key in ("depthwise", "pointwise2"):
            if block.get(key) is None:
                _fail(path, where, f"missing {key!r} convolution (keys: {sorted(block)})")
        if block.get("se") is not None:
            _fail(path, where + ".se", "squeeze-and-excitation modules are not supported")
        block_in = channels
        for key in ("pointwise1", "depthwise", "pointwise2"):
            conv = block.get(key)
            if conv is None:
                continue
            _validate_conv(conv, path, f"{where}.{key}")
            if int(conv["in_channel"]) != channels:
                _fail(path, f"{where}.{key}",
                      f"in_channel={conv['in_channel']} but the previous layer outputs "
                      f"{channels} channels")
            channels = int(conv["out_channel"])
        residual = block.get("residual")
        if residual is not None:
            if not isinstance(residual, dict):
                _fail(path, where + ".residual", f"expected a dict or None, got {residual!r}")
            shortcut = _shortcut_conv(residual)
            if shortcut is not None:
                _validate_conv(shortcut, path, where + ".residual")
                if int(shortcut["out_channel"]) != channels:
                    _fail(path, where + ".residual", "shortcut convolution channel mismatch")
            elif block_in != channels:
                _fail(path, where + ".residual",
                      f"identity shortcut needs equal channels, got {block_in} -> {channels}")
            elif _stride_of(block["depthwise"]) != (1, 1) or (
                block.get("pointwise1") is not None and _stride_of(block["pointwise1"]) != (1, 1)
            ):
                _fail(path, where + ".residual", "identity shortcut on a strided block")
    if data.get("feature_mix") is not None:
        _validate_conv(data["feature_mix"], path, "feature_mix")
        if int(data["feature_mix"]["in_channel"]) != channels:
            _fail(path, "feature_mix",
                  f"in_channel={data['feature_mix']['in_channel']} but the last block outputs "
                  f"{channels} channels")
        channels = int(data["feature_mix"]["out_channel"])
    classifier = data["classifier"]
    _validate_conv(classifier, path, "classifier", needs_io=False)
    if int(classifier["in_channel"]) != channels:
        _fail(path, "classifier",
              f"in_channel={classifier['in_channel']} but the features have {channels} channels")
    if _as_pair(classifier.get("kernel_size", 1), path, "classifier.kernel_size") != (1, 1):
        _fail(path, "classifier", "expected a 1x1 classifier on the pooled features")
    if int(classifier.get("groups", 1) or 1) != 1:
        _fail(path, "classifier", "grouped classifiers are not supported")


def _shortcut_conv(residual: dict) -> dict | None:
    """Returns the shortcut convolution of a residual entry, or None for an identity."""
    params = residual.get("params")
    if isinstance(params, dict) and "weight" in params:
        return residual
    return None


def _stride_of(conv: dict) -> tuple[int, int]:
    stride = conv.get("stride", 1)
    if isinstance(stride, (tuple, list)):
        return int(stride[0]), int(stride[1])
    return int(stride), int(stride)


# --------------------------------------------------------------------------------------
# Dequantization and layout conversion
# --------------------------------------------------------------------------------------


def _dequantize(conv: dict) -> tuple[np.ndarray, np.ndarray]:
    """Returns the float32 (PyTorch-layout) weight and bias of a quantized conv entry."""
    params = conv["params"]
    w_scales = np.asarray(params["w_scales"], dtype=np.float64).reshape(-1)
    weight = params["weight"].astype(np.float64) * w_scales[:, None, None, None]
    bias = params["bias"].astype(np.float64) * float(params["x_scale"]) * w_scales
    return weight.astype(np.float32), bias.astype(np.float32)


def _activation_bound(conv: dict, clip: str) -> float | None:
    """Upper clipping bound of the layer's ReLU, or None if the layer is linear.

    A ReLU-terminated layer is recognised by its output quantization range starting at
    exactly zero (zero point = int8 minimum). ``clip="quantized"`` uses the upper end of
    that range, ``(127 - y_zero) * y_scale``; ``clip="relu6"`` uses 6.
    """
    act = conv.get("act")
    params = conv["params"]
    relu_from_range = round(float(params["y_zero"])) == -128
    if act == "relu6" or (act is None and relu_from_range):
        if clip == "relu6" or act == "relu6":
            return 6.0
        bound = float((127 - float(params["y_zero"])) * float(params["y_scale"]))
        # 255 * (6 / 255) is 6 up to float rounding: keep an exact ReLU6 (fusable by
        # converters such as TFLite).
        return 6.0 if abs(bound - 6.0) < 1e-6 else bound
    if act == "relu":
        return math.inf
    return None


def _kind(conv: dict) -> str:
    groups = int(conv.get("groups", 1) or 1)
    cin = int(conv["in_channel"])
    if groups == 1:
        return "conv"
    if groups == cin:
        return "depthwise"
    return "grouped"


def _keras_kernel(conv: dict, weight: np.ndarray) -> np.ndarray:
    """Converts a PyTorch conv weight (out, in/groups, kh, kw) to the Keras layout."""
    if _kind(conv) == "depthwise":
        cin = int(conv["in_channel"])
        multiplier = weight.shape[0] // cin
        _, _, kh, kw = weight.shape
        # PyTorch output channel o = c * multiplier + m, same order as Keras' depthwise output.
        return weight.reshape(cin, multiplier, kh, kw).transpose(2, 3, 0, 1)
    return weight.transpose(2, 3, 1, 0)


# --------------------------------------------------------------------------------------
# Model building
# --------------------------------------------------------------------------------------


def _conv_block(x, conv: dict, name: str, clip: str, weights: dict):
    """Appends (padding +) convolution (+ clipped ReLU) for one checkpoint entry."""
    kh, kw = _as_pair(conv.get("kernel_size", 1), "", name)
    strides = _stride_of(conv)
    kind = _kind(conv)
    if kh > 1 or kw > 1:
        x = keras.layers.ZeroPadding2D(padding=(kh // 2, kw // 2), name=f"{name}_pad")(x)
    cout = int(conv["out_channel"])
    if kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(
            kernel_size=(kh, kw), strides=strides, padding="valid",
            depth_multiplier=cout // int(conv["in_channel"]), use_bias=True, name=name,
        )
    else:
        layer = keras.layers.Conv2D(
            cout, kernel_size=(kh, kw), strides=strides, padding="valid",
            groups=int(conv.get("groups", 1) or 1), use_bias=True, name=name,
        )
    x = layer(x)
    weight, bias = _dequantize(conv)
    weights[name] = [_keras_kernel(conv, weight), bias]
    bound = _activation_bound(conv, clip)
    if bound is not None:
        x = keras.layers.ReLU(max_value=None if math.isinf(bound) else bound,
                              name=f"{name}_relu")(x)
    return x


def _model_name(path: str) -> str:
    stem = os.path.basename(path).removesuffix(".pkl")
    stem = re.sub(r"[^0-9A-Za-z_]+", "_", stem).strip("_")
    return stem or "tiny_training_model"


def from_tiny_training(
    path_or_name: str | os.PathLike,
    include_top: bool = True,
    classes: int | None = None,
    input_shape: tuple[int, int, int] = (128, 128, 3),
    name: str | None = None,
    *,
    clip: str = "quantized",
    weights_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
) -> keras.Model:
    """Builds a float Keras functional model from a tiny-training int8 checkpoint.

    The architecture (kernel sizes, strides, depthwise/grouped convolutions,
    residual connections, activation clipping) is read from the checkpoint, so
    every model of the family (MCUNet-5fps, MobileNetV2-w0.35,
    ProxylessNAS-w0.3, ...) is supported without per-model code. Weights are
    dequantized with the stored per-channel scales. Inputs are RGB images scaled
    to ``[-1, 1]`` (see :func:`preprocess_input`).

    Layer names (``i`` is the 0-based index of ``checkpoint["blocks"]``)::

        first_conv_pad, first_conv, first_conv_relu,
        block{i}_expand, block{i}_expand_relu,            # pointwise1 (if any)
        block{i}_depthwise_pad, block{i}_depthwise, block{i}_depthwise_relu,
        block{i}_project,                                 # pointwise2 (linear)
        block{i}_shortcut (only for a shortcut conv), block{i}_add,  # residual
        feature_mix, feature_mix_relu,                    # if present
        global_pool, classifier (Dense), predictions (Softmax)

    The model contains no BatchNormalization layers (batch norm is folded into
    the convolution biases of the checkpoint).

    The weights are released by MIT HAN Lab under the MIT license
    (``LICENSE.tiny-training``); keep that notice wherever the weights, or a
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
        path_or_name: Path of a tiny-training ``.pkl`` file, or a preset name of
            :data:`keras_medyate.models.presets.PRESETS` (``"mcunet_5fps"``,
            ``"mobilenetv2_w035"``, ``"proxylessnas_w03"``), which is resolved
            with :func:`keras_medyate.models.presets.resolve_weights` (local
            directory, cache, then a checksummed download).
        include_top: If True, end with the classifier and a softmax layer named
            ``predictions``. If False, the output is the global-average-pooled
            feature vector (layer ``global_pool``).
        classes: Number of classes of a fresh classification head. ``None``
            keeps the pretrained 1000-way ImageNet head. Any other positive int
            replaces it with a new ``Dense`` layer named ``classifier``
            (Glorot-uniform kernel, zero bias) followed by the softmax. Ignored
            when ``include_top`` is False.
        input_shape: ``(height, width, 3)`` of the input. The network is fully
            convolutional followed by global pooling, so any resolution works
            (the checkpoints were trained at 128x128).
        name: Model name. Defaults to the file name, e.g. ``"mcunet_5fps"``.
        clip: How the ReLU of each layer is clipped. ``"quantized"`` (default)
            clips at the upper end of the layer's stored output quantization
            range, ``(127 - y_zero) * y_scale``, reproducing the behaviour of the
            int8 model the checkpoint describes; ``"relu6"`` clips every ReLU at
            6 (the original float architecture before quantization calibration).
        weights_dir: Optional local directory searched for preset files before
            ``$KERAS_MEDYATE_WEIGHTS_DIR`` and the cache (see ``resolve_weights``).
        sha256: Optional expected SHA-256 (hex) of the file; checked before
            anything is built. Preset files are always checked against their
            pinned digest; an explicit path is only checked if this is given.

    Returns:
        A ``keras.Model`` (functional) mapping ``(batch, H, W, 3)`` float images
        in ``[-1, 1]`` to class probabilities ``(batch, classes)``, or to pooled
        features ``(batch, channels)`` if ``include_top`` is False.

    Raises:
        FileNotFoundError: If ``path_or_name`` is neither an existing file nor a
            preset name.
        ValueError: If the checkpoint is corrupt, truncated, fails its checksum
            or is not a tiny-training model (the message names the file and the
            problem), or if an argument is invalid (``classes``,
            ``input_shape``, ``clip``).
    """
    if clip not in ("quantized", "relu6"):
        raise ValueError(f"clip must be 'quantized' or 'relu6', got {clip!r}.")
    if classes is not None:
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
            raise ValueError(
                f"classes must be None (keep the ImageNet head) or a positive int, got {classes!r}."
            )
        classes = int(classes)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(
        d is not None and (not isinstance(d, (int, np.integer)) or d < 1) for d in input_shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive ints (or None for "
            f"height/width), got {input_shape!r}."
        )

    from keras_medyate.models import presets as _presets  # local import: avoids a cycle

    path = _presets.resolve_weights(path_or_name, weights_dir=weights_dir)
    if sha256 is not None:
        actual = _presets.sha256_of(path)
        if actual != str(sha256).lower():
            raise ValueError(
                f"Checksum mismatch for checkpoint {path!r}: expected SHA-256 {sha256}, got "
                f"{actual}. The file is corrupt, truncated or a different checkpoint; "
                "download it again or pass the digest of the file you mean to load."
            )
    data = load_tiny_training_checkpoint(path)

    first = data["first_conv"]
    if input_shape[-1] != int(first["in_channel"]):
        raise ValueError(
            f"input_shape={input_shape!r} has {input_shape[-1]} channels but the checkpoint "
            f"{path!r} expects {first['in_channel']} (RGB)."
        )
    if name is None:
        name = _presets.preset_name_for(path_or_name) or _model_name(path)

    weights: dict[str, list[np.ndarray]] = {}
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_block(inputs, first, "first_conv", clip, weights)
    for i, block in enumerate(data["blocks"]):
        block_input = x
        if block.get("pointwise1") is not None:
            x = _conv_block(x, block["pointwise1"], f"block{i}_expand", clip, weights)
        x = _conv_block(x, block["depthwise"], f"block{i}_depthwise", clip, weights)
        x = _conv_block(x, block["pointwise2"], f"block{i}_project", clip, weights)
        residual = block.get("residual")
        if residual is not None:
            shortcut = block_input
            conv = _shortcut_conv(residual)
            if conv is not None:
                shortcut = _conv_block(block_input, conv, f"block{i}_shortcut", clip, weights)
            x = keras.layers.Add(name=f"block{i}_add")([x, shortcut])
    if data.get("feature_mix") is not None:
        x = _conv_block(x, data["feature_mix"], "feature_mix", clip, weights)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if include_top:
        classifier = data["classifier"]
        if classes is None:
            dense = keras.layers.Dense(int(classifier["out_channel"]), name="classifier")
            x = dense(x)
            weight, bias = _dequantize(classifier)
            weights["classifier"] = [weight[:, :, 0, 0].T, bias]
        else:
            x = keras.layers.Dense(
                classes, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                name="classifier",
            )(x)
        x = keras.layers.Softmax(name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    for layer_name, values in weights.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:  # pragma: no cover - guarded by validation
            raise ValueError(
                f"Checkpoint {path!r}: weights of layer {layer_name!r} have shapes {got}, "
                f"the layer expects {expected}."
            )
        layer.set_weights(values)
    return model


def preprocess_input(images):
    """Scales RGB images from ``[0, 255]`` to the ``[-1, 1]`` range the models expect.

    Computes ``images / 127.5 - 1`` in float32. Works on numpy arrays, Python
    lists and TensorFlow (or other backend) tensors; numpy input gives a numpy
    output, tensor input a tensor output.

    Example:
        >>> import numpy as np
        >>> from keras_medyate.models import preprocess_input
        >>> preprocess_input(np.array([[0, 127.5, 255]], dtype=np.float32))
        array([[-1.,  0.,  1.]], dtype=float32)

    Args:
        images: Array or tensor of RGB pixel values in ``[0, 255]`` (uint8 or
            float), any shape ending in the channel axis.

    Returns:
        A float32 array or tensor of the same shape with values in ``[-1, 1]``.

    Raises:
        TypeError: If ``images`` is not numeric.
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
