"""Where keras-medyate caches files, and the one SHA-256 check of a file.

Downloads go through `keras.utils.get_file(..., file_hash=...)`, which checks
what it fetched; files found locally are checked with `verify_sha256`.

Example:

>>> import os
>>> from keras_medyate import files
>>> files.cache_dir("weights").endswith(os.path.join("keras_medyate", "weights"))
True
"""

import hashlib
import os
import tempfile


def keras_home():
    """The Keras home folder, read from `KERAS_HOME` at call time.

    Mirrors Keras' own rule: `$KERAS_HOME` if set, else `~/.keras`, or
    `<tmp>/.keras` when the home folder is not writable.
    """
    if os.environ.get("KERAS_HOME"):
        return os.path.abspath(os.path.expanduser(os.environ["KERAS_HOME"]))
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = tempfile.gettempdir()
    return os.path.join(base, ".keras")


def cache_subdir(kind):
    """`keras_medyate/<kind>`: the cache folder of one kind of file, relative to
    the Keras home (the `cache_subdir` of `keras.utils.get_file`)."""
    return os.path.join("keras_medyate", kind)


def cache_dir(kind):
    """`<keras_home>/keras_medyate/<kind>` (not created here)."""
    return os.path.join(keras_home(), cache_subdir(kind))


def sha256_of(path, chunk_size=1 << 20):
    """The hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path, expected, what="file", advice=""):
    """Returns `path` if the file's SHA-256 is `expected` (hex, any case).

    Args:
        path: the file.
        expected: str, the hex digest it must have.
        what: str, what the file is, for the message (`"preset 'mcunet_5fps'"`).
        advice: str, what to do about a mismatch, appended to the message.

    Raises:
        ValueError: the digests differ; the message gives both and the path.
    """
    actual = sha256_of(path)
    if actual != str(expected).lower():
        message = (f"Checksum mismatch for {what} at {path!r}: expected SHA-256 {expected}, "
                   f"got {actual}.")
        raise ValueError(f"{message} {advice}" if advice else message)
    return path
