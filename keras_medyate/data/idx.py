"""Reader for the IDX format of MNIST and Fashion-MNIST (`*-idx?-ubyte[.gz]`)."""

import gzip
import os
import zlib

import numpy as np

# Third byte of the magic number -> big-endian element type.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path, expected_ndim=None):
    """Reads an IDX file (optionally gzip-compressed) into a NumPy array.

    The layout is a 4-byte magic number `00 00 <type> <ndim>`, then
    `ndim` big-endian uint32 sizes, then the values in row-major order.

    Example:

    >>> labels = read_idx(  # doctest: +SKIP
    ...     "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    >>> labels.shape  # doctest: +SKIP
    (10000,)

    Args:
        path: str. Path of the file; a `.gz` suffix means gzip-compressed.
        expected_ndim: int or None. If given, the number of dimensions the
            file must have. Defaults to `None`.

    Returns:
        The array, in native byte order (uint8 for image and label files).

    Raises:
        ValueError: If the file is corrupt: bad gzip stream, wrong magic
            number, unexpected rank, or a size that does not match the header.
    """
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"Corrupt IDX file {path}: cannot decompress it ({err}). Replace it with a fresh copy."
        ) from err

    name = os.path.basename(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"Corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'} "
            "(expected 0000 followed by a type code and the number of dimensions)."
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(
            f"Corrupt IDX file {path}: {name} has {ndim} dimensions, expected {expected_ndim}."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"Corrupt IDX file {path}: truncated header.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected_bytes:
        raise ValueError(
            f"Corrupt IDX file {path}: header announces shape {shape} "
            f"({expected_bytes} bytes of data) but the file holds "
            f"{len(raw) - header} bytes."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)
