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
