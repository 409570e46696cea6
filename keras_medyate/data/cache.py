"""On-disk cache for unpacked dataset archives.

Archives are unpacked once into `<KERAS_HOME>/keras_medyate/datasets/`
(`~/.keras/keras_medyate/datasets/` when `KERAS_HOME` is unset). An
unpacked folder is only used when its marker file exists; the marker is
written after extraction finished and the folder is moved into place
atomically, so an interrupted extraction is never picked up.
"""

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib

from keras_medyate import files
from keras_medyate.files import keras_home, sha256_of  # noqa: F401 (re-exported)

#: File written inside an unpacked folder once extraction has finished.
MARKER_NAME = ".keras_medyate_complete"


def cache_dir():
    """Returns the folder where `keras_medyate` unpacks datasets.

    Example:

    >>> import os
    >>> os.path.basename(cache_dir())
    'datasets'

    Returns:
        `<keras_home()>/keras_medyate/datasets` (not created here).
    """
    return files.cache_dir("datasets")


def is_complete(folder):
    """Tells whether `folder` is a fully unpacked archive (marker present)."""
    return os.path.isfile(os.path.join(folder, MARKER_NAME))


def _check_member(member, top):
    name = member.name
    parts = name.split("/")
    if (
        name.startswith("/")
        or "\\" in name
        or any(part in ("..", ".") for part in parts)
        or parts[0] != top
    ):
        raise ValueError(
            f"Refusing to unpack archive member {name!r}: every member must "
            f"lie under {top + '/'!r}."
        )
    if not (member.isfile() or member.isdir()):
        raise ValueError(
            f"Refusing to unpack archive member {name!r}: only regular files "
            "and folders are allowed."
        )


def _stream_extract(archive, staging, top):
    """Writes the archive's files under `staging` in one sequential pass.

    Every member is checked first (see `_check_member`); files are
    written with default permissions, links and devices are refused. This
    is faster than `TarFile.extractall(filter="data")` on archives of many
    small files.
    """
    made = set()
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            _check_member(member, top)
            path = os.path.join(staging, *member.name.split("/"))
            if member.isdir():
                os.makedirs(path, exist_ok=True)
                continue
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            source = tar.extractfile(member)
            with open(path, "wb") as f:
                shutil.copyfileobj(source, f)


def extract_tarball_once(archive, top, expected_sha256=None, destination=None):
    """Unpacks `archive` into the cache unless already done; returns the folder.

    The archive must contain a single top-level folder named `top`. It is
    unpacked to a temporary folder next to the destination, the marker file
    is written, then the folder is renamed into place. Later calls find the
    marker and return at once without reading the archive. A leftover folder
    without marker (an interrupted run) is removed and unpacked again.

    Example:

    >>> folder = extract_tarball_once(  # doctest: +SKIP
    ...     "cifar10_jpg.tar.gz", top="cifar10_jpg")

    Args:
        archive: str. Path of a `.tar`, `.tar.gz` or `.tgz` file.
        top: str. Name of the archive's top-level folder.
        expected_sha256: str or None. If given, the archive's SHA-256 is
            checked before unpacking. Defaults to `None`.
        destination: str or None. Folder to unpack into. Defaults to
            `cache_dir()`.

    Returns:
        Path of the unpacked `<destination>/<top>` folder.

    Raises:
        ValueError: If the checksum differs, the archive is unreadable or
            holds members outside `top`.
    """
    destination = destination or cache_dir()
    target = os.path.join(destination, top)
    if is_complete(target):
        return target

    if expected_sha256 is not None:
        files.verify_sha256(
            archive, expected_sha256, what="archive",
            advice="The file is corrupt or not the expected archive; replace it with a fresh copy.")

    os.makedirs(destination, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{top}-unpacking-", dir=destination)
    try:
        try:
            _stream_extract(archive, staging, top)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise ValueError(
                f"Could not unpack {archive}: {err}. The file is corrupt or "
                "truncated; replace it with a fresh copy."
            ) from err
        unpacked = os.path.join(staging, top)
        if not os.path.isdir(unpacked):
            raise ValueError(f"Archive {archive} has no top-level folder {top!r}.")
        with open(os.path.join(unpacked, MARKER_NAME), "w") as f:
            f.write(f"source={os.path.abspath(archive)}\n")
        if os.path.lexists(target) and not is_complete(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(unpacked, target)
        except OSError:
            # Another process finished first: use its copy.
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
