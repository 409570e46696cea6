"""Where keras-medyate caches files, and file checksums.

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


def cache_dir(kind):
    """`<keras_home>/keras_medyate/<kind>` (not created here)."""
    return os.path.join(keras_home(), "keras_medyate", kind)


def sha256_of(path, chunk_size=1 << 20):
    """The hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
