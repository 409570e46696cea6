"""Preset names → verified local checkpoint files (local copies, cache, checksummed download).

A preset names one of MIT HAN Lab's ImageNet-pretrained MCU models released with
tiny-training ("On-Device Training Under 256KB Memory", Lin et al., 2022). The
weights are distributed under the MIT license (`LICENSE.tiny-training`,
Copyright (c) 2022 MIT HAN Lab); keep that notice wherever the weights, or models
derived from them, are redistributed.

Where a preset's file is looked for, in order (`resolve_weights`):

1. an explicit, existing file path (used as given);
2. the `weights_dir` argument, if given;
3. the directory in the `KERAS_MEDYATE_WEIGHTS_DIR` environment variable
   (tests and CI point it at a read-only shared copy; no network needed);
4. the cache `$KERAS_HOME/keras_medyate/weights/` (`KERAS_HOME` defaults to
   `~/.keras`);
5. the copy shipped with the package (`keras_medyate/assets/`: `mcunet-5fps.pkl`,
   the demo's default, 1 MB, with its `LICENSE.tiny-training`);
6. a download from the public tiny-training repository into that cache, with
   `keras.utils.get_file`, only when no local copy exists.

Files found locally (2.-5.) are checked against the preset's SHA-256 (with
`keras_medyate.files.verify_sha256`; a download is checked by
`keras.utils.get_file` itself). A preset whose SHA-256 is unknown
(`proxylessnas_w03`: the file was not available when the presets were
written) is only checked for being a well-formed tiny-training checkpoint, and
a warning says so. The model builders of the presets (`mcunet_5fps`, ...)
are in `keras_medyate.models.tiny_training`.
"""

import os
import warnings

import keras

from keras_medyate import files
from keras_medyate.models import checkpoint

__all__ = [
    "PRESETS",
    "SHIPPED_DIR",
    "check_preset_file",
    "resolve_weights",
    "weights_cache_dir",
]

_BASE_URL = (
    "https://raw.githubusercontent.com/mit-han-lab/tiny-training/main/"
    "algorithm/assets/mcu_models/"
)

#: Environment variable naming a local directory that holds the preset files.
WEIGHTS_DIR_ENV = "KERAS_MEDYATE_WEIGHTS_DIR"

#: The folder of the files shipped with the package (the checkpoints among them
#: are found there without a download; see `LICENSE.tiny-training` beside them).
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")

#: The pretrained checkpoints of the tiny-training model family (MIT license).
PRESETS = {
    "mcunet_5fps": {
        "file": "mcunet-5fps.pkl",
        "url": _BASE_URL + "mcunet-5fps.pkl",
        "sha256": "4de2e06ed39041fc3609de806461a9e1d1f82f186927474bd9e9b0de756a0f00",
        "description": (
            "MCUNet-in1 ('mcunet-5fps'), ImageNet-pretrained at 128x128, int8 weights "
            "dequantized to float; 14 inverted-residual blocks with 3/5/7 depthwise "
            "kernels, 160-d features. MIT license, MIT HAN Lab tiny-training."
        ),
    },
    "mobilenetv2_w035": {
        "file": "mbv2-w0.35.pkl",
        "url": _BASE_URL + "mbv2-w0.35.pkl",
        "sha256": "310d2871c50a89af9f11928e28418729984c2e402cf68560a19b6cbb75854163",
        "description": (
            "MobileNetV2 width 0.35, ImageNet-pretrained at 128x128, int8 weights "
            "dequantized to float; 17 inverted-residual blocks, 112-d features. "
            "MIT license, MIT HAN Lab tiny-training."
        ),
    },
    "proxylessnas_w03": {
        "file": "proxyless-w0.3.pkl",
        "url": _BASE_URL + "proxyless-w0.3.pkl",
        # Unknown here: downloads are then only checked for being a well-formed
        # checkpoint, and a warning says so.
        "sha256": None,
        "description": (
            "ProxylessNAS (mobile) width 0.3, ImageNet-pretrained, int8 weights "
            "dequantized to float. MIT license, MIT HAN Lab tiny-training. No SHA-256 "
            "is pinned: the file is only checked for being a well-formed checkpoint."
        ),
    },
}

# Alternative spellings accepted for preset names (the upstream file stems).
_ALIASES = {
    "mcunet-5fps": "mcunet_5fps",
    "mcunet-5fps.pkl": "mcunet_5fps",
    "mbv2-w0.35": "mobilenetv2_w035",
    "mbv2-w0.35.pkl": "mobilenetv2_w035",
    "proxyless-w0.3": "proxylessnas_w03",
    "proxyless-w0.3.pkl": "proxylessnas_w03",
}


def _canonical(name):
    if not isinstance(name, str):
        return None
    if name in PRESETS:
        return name
    return _ALIASES.get(name)


def preset_name_for(name_or_path):
    """Returns the canonical preset name for `name_or_path` or None if it is not one.

    Example:
        >>> from keras_medyate.models.presets import preset_name_for
        >>> preset_name_for("mbv2-w0.35"), preset_name_for("/tmp/x.pkl")
        ('mobilenetv2_w035', None)

    Args:
        name_or_path: str or anything. A preset name, an upstream file
            stem/name, or anything else.

    Returns:
        The key of `PRESETS`, or None.
    """
    if isinstance(name_or_path, str) and os.path.isfile(name_or_path):
        return None
    return _canonical(name_or_path)


def weights_cache_dir():
    """Returns the download cache directory of the preset files.

    `$KERAS_HOME/keras_medyate/weights` if `KERAS_HOME` is set, else
    `~/.keras/keras_medyate/weights`. The directory is not created here.

    Example:
        >>> from keras_medyate.models.presets import weights_cache_dir
        >>> weights_cache_dir().endswith(os.path.join("keras_medyate", "weights"))
        True

    Returns:
        The absolute path of the cache directory.
    """
    return files.cache_dir("weights")


def _verify(path, preset):
    """Checks a local preset file against its pinned SHA-256 (or its structure)."""
    expected = PRESETS[preset]["sha256"]
    if expected is None:
        warnings.warn(
            f"Preset {preset!r} has no pinned SHA-256; {path!r} was only checked for being "
            "a well-formed tiny-training checkpoint, not for being the exact upstream file.",
            UserWarning,
            stacklevel=3,
        )
        checkpoint.load_tiny_training_checkpoint(path)  # raises ValueError if malformed
        return path
    return files.verify_sha256(
        path, expected, what=f"preset {preset!r}",
        advice="The file is corrupt, truncated or a different checkpoint; delete it (it will "
               f"be downloaded again) or point {WEIGHTS_DIR_ENV} at a directory holding the "
               "original file.")


def _download(url, fname, sha256, cache_dir):
    """Downloads `url` to `cache_dir/keras_medyate/weights/fname` (checksummed).

    Kept as a separate module-level function so tests can replace it.
    """
    return keras.utils.get_file(
        fname=fname,
        origin=url,
        file_hash=sha256,
        hash_algorithm="sha256",
        cache_dir=cache_dir,
        cache_subdir=files.cache_subdir("weights"),
    )


def resolve_weights(name_or_path, weights_dir=None):
    """Returns the local path of a tiny-training checkpoint, downloading it if needed.

    Resolution order:

    1. `name_or_path` is an existing file: it is returned as is (no checksum,
       so modified checkpoints can be used; the loader still validates it).
    2. Otherwise it must be a preset name (a key of `PRESETS`, or the
       upstream file name such as `"mcunet-5fps.pkl"`). Its file is looked
       for in `weights_dir` (if given), then `$KERAS_MEDYATE_WEIGHTS_DIR`,
       then the cache `weights_cache_dir`, then `SHIPPED_DIR`
       (`mcunet-5fps.pkl` ships with the package), and is downloaded into the
       cache with `keras.utils.get_file(..., file_hash=sha256)` only if none
       of them holds it. Local files are verified against the pinned SHA-256.

    The weights are MIT-licensed by MIT HAN Lab; keep `LICENSE.tiny-training`
    wherever they are redistributed.

    Example:
        >>> from keras_medyate.models.presets import resolve_weights
        >>> path = resolve_weights("mcunet_5fps")   # env dir, cache or download
        >>> os.path.basename(path)
        'mcunet-5fps.pkl'

    Args:
        name_or_path: str or path-like. Path of a `.pkl` file, or a preset name.
        weights_dir: str, path-like or None. Directory searched first for the
            preset's file. Defaults to `None`.

    Returns:
        The path of the checkpoint file.

    Raises:
        FileNotFoundError: If `name_or_path` is neither an existing file nor a
            known preset name (the message lists the presets).
        ValueError: If a local preset file fails its SHA-256 check (the message
            gives the expected and actual digests and the path), or if a preset
            without a pinned SHA-256 is not a well-formed checkpoint.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(
            f"name_or_path must be a file path or a preset name (str), got "
            f"{type(name_or_path).__name__}: {name_or_path!r}."
        )
    if os.path.isfile(name_or_path):
        return name_or_path
    preset = _canonical(name_or_path)
    if preset is None:
        raise FileNotFoundError(
            f"{name_or_path!r} is neither an existing file nor a known preset. Pass the path of "
            f"a tiny-training .pkl checkpoint or one of the presets {sorted(PRESETS)}."
        )
    spec = PRESETS[preset]
    fname = spec["file"]
    candidates = []
    if weights_dir is not None:
        candidates.append(os.path.join(os.fspath(weights_dir), fname))
    env_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if env_dir:
        candidates.append(os.path.join(os.path.expanduser(env_dir), fname))
    candidates.append(os.path.join(weights_cache_dir(), fname))
    candidates.append(os.path.join(SHIPPED_DIR, fname))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return _verify(candidate, preset)
    try:
        path = _download(spec["url"], fname, spec["sha256"], files.keras_home())
    except Exception as error:  # network and checksum errors come in many types
        raise FileNotFoundError(
            f"Preset {preset!r} ({fname!r}) was not found locally (looked in "
            f"{candidates}) and downloading it from {spec['url']} failed: {error}. "
            f"Offline, set {WEIGHTS_DIR_ENV} to a directory holding {fname!r}."
        ) from error
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Downloading preset {preset!r} from {spec['url']} did not produce a file "
            f"(got {path!r}). Download it manually into {weights_cache_dir()!r} or set "
            f"{WEIGHTS_DIR_ENV} to a directory holding {fname!r}."
        )
    return _verify(path, preset)


def check_preset_file(preset, path):
    """Returns `path` if it exists and is the preset's file (its pinned SHA-256).

    Args:
        preset: str. A key of `PRESETS`.
        path: str or path-like. The file given for it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file fails its checksum (or, for a preset without a
            pinned SHA-256, is not a well-formed checkpoint).
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(
            f"weights={source!r} for preset {preset!r} does not exist; pass the path of "
            f"{PRESETS[preset]['file']!r} or weights=None to resolve it automatically."
        )
    return _verify(source, preset)
