"""Exceptions raised by `keras_medyate.data`."""

#: Environment variable naming a local folder that holds the datasets.
DATA_DIR_ENV = "KERAS_MEDYATE_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """The requested dataset is neither available locally nor downloadable.

    Subclass of `FileNotFoundError`, so `except FileNotFoundError`
    also catches it. The message says which argument, environment variable
    or path to set.
    """


def download_or_explain(download_fn, what, not_found_message, download=True):
    """Runs a Keras download as the last resort, or explains where to put the data.

    Args:
        download_fn: callable. Returns the dataset (a Keras download).
        what: str. The download in words, e.g. `"keras.datasets.cifar10.load_data()"`.
        not_found_message: str. Where the data was looked for.
        download: bool. `False` forbids the download. Defaults to `True`.

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
