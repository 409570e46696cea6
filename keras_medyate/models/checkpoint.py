"""Reading a tiny-training `.pkl` checkpoint into validated nested dicts (numpy only).

The tiny-training project ("On-Device Training Under 256KB Memory", Lin et al.,
NeurIPS 2022) ships its ImageNet-pretrained MCU models (MCUNet-in1 "5fps",
MobileNetV2-w0.35, ProxylessNAS-w0.3) as `.pkl` files. Such a file is a zip
container (PyTorch's serialization layout) whose `*/data.pkl` member is a plain
pickle of nested dicts and lists of numpy arrays describing a quantized
(int8 weights, int32 biases, per-channel scales) inverted-residual network.

This module reads that file with numpy and the standard library only: a
restricted unpickler resolves nothing but numpy arrays and plain containers
(anything else would run arbitrary code), and the structure is validated
(every convolution's weight, bias and scale shapes agree with its declared
channels, kernel and groups), so a malformed file fails here with a message
naming the file and the entry, not half-way through building a model.
`keras_medyate.models.architecture` turns the result into a Keras model.

The weights are released by MIT HAN Lab under the MIT license (see
`LICENSE.tiny-training` next to the checkpoints, or the upstream repository
https://github.com/mit-han-lab/tiny-training); keep that notice wherever the
weights or models derived from them are redistributed.
"""

import importlib
import io
import math
import os
import pickle
import zipfile
import zlib

import numpy as np

__all__ = ["load_tiny_training_checkpoint"]

# --------------------------------------------------------------------------------------
# Reading the checkpoint (numpy + standard library only)
# --------------------------------------------------------------------------------------

# Globals a tiny-training checkpoint may legitimately reference. Anything else
# (in particular `torch` rebuild functions, `os.system`, `eval`...) is refused:
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


def _numpy_module(module):
    """Imports `module`, mapping numpy 1's `numpy.core` to numpy 2's `numpy._core`."""
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

    def find_class(self, module, name):
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

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(
            "the pickle references external tensor storage (a regular PyTorch state dict?); "
            "tiny-training MCU checkpoints hold plain numpy arrays"
        )


def _read_data_pickle(path):
    """Returns the bytes of the `*/data.pkl` member of the zip container at `path`."""
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


def load_tiny_training_checkpoint(path):
    """Reads and validates a tiny-training `.pkl` checkpoint into nested dicts.

    Only numpy and the standard library are used; the pickle is read with a
    restricted unpickler that resolves nothing but numpy arrays and plain Python
    containers (references to `numpy.core` are mapped to numpy 2's
    `numpy._core`). The structure is validated (every convolution's weight,
    bias and scale shapes agree with its declared channels, kernel and groups),
    so a malformed file fails here rather than half-way through model building.

    The weights are released by MIT HAN Lab under the MIT license; keep the
    notice (`LICENSE.tiny-training`) wherever they are redistributed.

    Example:
        >>> from keras_medyate.models import load_tiny_training_checkpoint
        >>> from keras_medyate.models.presets import resolve_weights
        >>> ckpt = load_tiny_training_checkpoint(resolve_weights("mcunet_5fps"))
        >>> sorted(ckpt)
        ['blocks', 'classifier', 'feature_mix', 'first_conv']
        >>> ckpt["first_conv"]["params"]["weight"].shape
        (16, 3, 3, 3)

    Args:
        path: str or path-like. Path of the `.pkl` file.

    Returns:
        The checkpoint as a dict with keys `first_conv`, `blocks` (a list of
        dicts with `pointwise1`, `depthwise`, `pointwise2`, `residual`,
        `se`), `feature_mix` and `classifier`.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If the file is not a zip container, is truncated or corrupt,
            has no `data.pkl` member, references anything other than numpy
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


def _fail(path, where, what):
    raise ValueError(
        f"Checkpoint {path!r}: {where}: {what}. The file is not a well-formed tiny-training "
        "MCU checkpoint; check that it is the intended file, or download it again."
    )


def as_pair(value, path, where):
    """`(a, a)` for an int, the pair itself for a pair; a clear error otherwise."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    _fail(path, where, f"expected an int or a pair of ints, got {value!r}")
    raise AssertionError  # unreachable


def _check_quant_param(params, key, path, where):
    if key not in params:
        _fail(path, where, f"missing quantization parameter {key!r} (keys: {sorted(params)})")
    value = params[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        _fail(path, where, f"quantization parameter {key!r} is not a number: {value!r}")
    if not math.isfinite(number) or (key.endswith("scale") and number <= 0):
        _fail(path, where, f"quantization parameter {key!r} has an invalid value {value!r}")


def _validate_conv(entry, path, where, *, needs_io=True):
    """Checks that `entry` describes a convolution with consistent arrays."""
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
    kh, kw = as_pair(entry.get("kernel_size", 1), path, where + ".kernel_size")
    as_pair(entry.get("stride", 1), path, where + ".stride")
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


def _validate_checkpoint(data, path):
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
            shortcut = shortcut_conv(residual)
            if shortcut is not None:
                _validate_conv(shortcut, path, where + ".residual")
                if int(shortcut["out_channel"]) != channels:
                    _fail(path, where + ".residual", "shortcut convolution channel mismatch")
            elif block_in != channels:
                _fail(path, where + ".residual",
                      f"identity shortcut needs equal channels, got {block_in} -> {channels}")
            elif stride_of(block["depthwise"]) != (1, 1) or (
                block.get("pointwise1") is not None and stride_of(block["pointwise1"]) != (1, 1)
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
    if as_pair(classifier.get("kernel_size", 1), path, "classifier.kernel_size") != (1, 1):
        _fail(path, "classifier", "expected a 1x1 classifier on the pooled features")
    if int(classifier.get("groups", 1) or 1) != 1:
        _fail(path, "classifier", "grouped classifiers are not supported")


def shortcut_conv(residual):
    """Returns the shortcut convolution of a residual entry, or None for an identity."""
    params = residual.get("params")
    if isinstance(params, dict) and "weight" in params:
        return residual
    return None


def stride_of(conv):
    """The `(sh, sw)` stride of a convolution entry."""
    stride = conv.get("stride", 1)
    if isinstance(stride, (tuple, list)):
        return int(stride[0]), int(stride[1])
    return int(stride), int(stride)
