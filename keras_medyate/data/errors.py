"""Exceptions raised by :mod:`keras_medyate.data`."""

from __future__ import annotations

DATA_DIR_ENV = "KERAS_MEDYATE_DATA_DIR"
"""Environment variable naming a local folder that holds the datasets."""


class DatasetNotFoundError(FileNotFoundError):
    """The requested dataset is neither available locally nor downloadable.

    Subclass of :class:`FileNotFoundError`, so ``except FileNotFoundError``
    also catches it. The message says which argument, environment variable
    or path to set.
    """


def download_or_explain(download_fn, what, not_found_message, download=True):
    """Runs a Keras download as the last resort, or explains where to put the data.

    Args:
        download_fn: callable returning the dataset (a Keras download).
        what: str, the download in words, e.g. "keras.datasets.cifar10.load_data()".
        not_found_message: str, where the data was looked for.
        download: bool, False forbids the download.

    Raises:
        DatasetNotFoundError: downloading is disabled or failed.
    """
    if not download:
        raise DatasetNotFoundError(not_found_message + " Downloading is disabled (download=False).")
    try:
        return download_fn()
    except Exception as err:  # network errors come in many types
        raise DatasetNotFoundError(
            not_found_message + f" Downloading with {what} failed too: {err}"
        ) from err
