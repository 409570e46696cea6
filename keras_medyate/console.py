"""Quiet console output for entry points: TensorFlow's start-up lines, Keras' warnings.

The library itself never changes logging settings on import. Programs that
print results for a person (the demo, the comparison CLI, the notebooks) call
`quiet_tensorflow` before the first `import tensorflow` (or `import keras`),
then `quiet_keras` once TensorFlow is imported.

Measured with TensorFlow 2.21 on a CPU-only Linux machine, `python -c "import
tensorflow"` prints two groups of lines:

* written before TensorFlow's logging is set up, once per TensorFlow shared
  library: `WARNING: All log messages before absl::InitializeLog() is called
  are written to STDERR`, `I0000 ... port.cc] oneDNN custom operations are
  on ...` and `I0000 ... cudart_stub.cc] Could not find cuda drivers ...`.
  No environment variable removes them (`TF_CPP_MIN_LOG_LEVEL=3`,
  `GLOG_minloglevel=3`, `GRPC_VERBOSITY=ERROR` and `TF_CPP_MAX_VLOG_LEVEL`
  were tried and change nothing; `TF_ENABLE_ONEDNN_OPTS=0` removes the oneDNN
  line only by changing the numerics, so it is not used). `quiet_tensorflow`
  removes them by importing TensorFlow with the standard-error file
  descriptor captured and writing back every line TensorFlow's own level
  would have kept.
* written after it: `I0000 ... cpu_feature_guard.cc] This TensorFlow binary is
  optimized ...` and `To enable the following instructions: AVX2 ...`,
  removed by `TF_CPP_MIN_LOG_LEVEL` >= 1. Level 3 (the one set here) also
  removes TensorFlow's C++ errors that are not failures, such as `E0000 ...
  failed call to cuInit` on machines with CUDA libraries but no GPU; a real
  failure still raises a Python exception with its message.

Example (an entry point; the `import tensorflow` that follows prints nothing):

>>> from keras_medyate import console
>>> console.quiet_tensorflow(verbose=False)
>>> import tensorflow as tf
>>> console.quiet_keras()
>>> tf.get_logger().level == 40  # logging.ERROR
True
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

#: The environment variable TensorFlow's C++ logging reads: 0 all, 1 no INFO,
#: 2 no WARNING, 3 no ERROR.
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"

#: The level `quiet_tensorflow` sets when the variable is not already set.
QUIET_TF_LOG_LEVEL = "3"

#: Keras' warning when `fit(shuffle=True)` (the default) gets a `tf.data.Dataset`,
#: which the library's data pipelines already shuffle.
SHUFFLE_IGNORED_MESSAGE = r"`shuffle=True` was passed, but will be ignored"

_PRE_INIT_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
# An absl-formatted C++ log line: severity letter, MMDD, time, thread id, file:line]
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s\]]+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# LiteRT's own minimal logging, e.g. "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_LITERT_LINE = re.compile(r"^(INFO|WARNING|ERROR): ")
_LITERT_SEVERITY = {"INFO": 0, "WARNING": 1, "ERROR": 2}


def quiet_tensorflow(verbose=False):
    """Imports TensorFlow without its start-up log lines; call before any TF import.

    When `verbose` is false: sets `TF_CPP_MIN_LOG_LEVEL=3` unless the variable
    is already set (a value the user chose wins), then imports TensorFlow
    with the standard-error file descriptor captured and writes back every
    captured line except the C++ log lines below that level (and the absl
    banner announcing them). Anything else printed during the import, such as
    a Python warning, is written back unchanged. When `verbose` is true, does
    nothing. The module docstring lists which line each setting removes.

    Calling it after TensorFlow is imported only sets the variable, which
    TensorFlow has already read: the start-up lines are printed by then.

    Args:
        verbose: keep TensorFlow's default output (e.g. a `--verbose` flag).

    Example:

    >>> from keras_medyate.console import quiet_tensorflow
    >>> quiet_tensorflow()          # before `import tensorflow` / `import keras`
    >>> import os
    >>> os.environ["TF_CPP_MIN_LOG_LEVEL"] in "0123"
    True
    """
    if verbose:
        return
    os.environ.setdefault(TF_LOG_LEVEL_ENV, QUIET_TF_LOG_LEVEL)
    if "tensorflow" in sys.modules:
        return
    min_level = _min_log_level(os.environ[TF_LOG_LEVEL_ENV])
    with _stderr_filtered(lambda line: _is_below_level(line, min_level)):
        import tensorflow  # noqa: F401, PLC0415 - the import whose output is filtered


def quiet_keras(verbose=False):
    """Silences Python-level TensorFlow/Keras messages below ERROR; call after the TF import.

    When `verbose` is false: sets the `tensorflow` logger (`tf.get_logger()`,
    e.g. `WARNING:tensorflow:5 out of the last 5 calls to ... triggered
    tf.function retracing`) and absl's Python logging (Keras' `WARNING:absl:`
    messages, e.g. when saving to HDF5) to ERROR, and ignores Keras' warning
    "`shuffle=True` was passed, but will be ignored" (`fit` on a `tf.data`
    pipeline, which the library's data loaders shuffle themselves). When
    `verbose` is true, does nothing.

    Args:
        verbose: keep the default output (e.g. a `--verbose` flag).

    Example:

    >>> import warnings
    >>> from keras_medyate.console import quiet_keras
    >>> quiet_keras()
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.warn("`shuffle=True` was passed, but will be ignored since ...")
    >>> seen
    []
    """
    if verbose:
        return
    import tensorflow as tf  # noqa: PLC0415 - after quiet_tensorflow
    from absl import logging as absl_logging  # noqa: PLC0415

    tf.get_logger().setLevel(logging.ERROR)
    absl_logging.set_verbosity(absl_logging.ERROR)
    warnings.filterwarnings("ignore", message=SHUFFLE_IGNORED_MESSAGE, category=UserWarning)


@contextlib.contextmanager
def quiet_native_logs(min_level=2):
    """Within the block, drops TensorFlow's C++ log lines below `min_level` (2: INFO and WARNING).

    For library calls that make TensorFlow's or LiteRT's C++ code chatty
    whatever the program set up, such as the TFLite converter (about ten
    `Reading SavedModel from ...` / `Ignored output_format` lines per
    export) or LiteRT applying XNNPACK (`INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU.`). Errors and everything else written to
    standard error are written back in order.

    Args:
        min_level: int, the lowest C++ severity kept (0 INFO, 1 WARNING, 2 ERROR).

    Example:

    >>> from keras_medyate import console
    >>> with console.quiet_native_logs():
    ...     pass
    """
    level = max(int(min_level), _min_log_level(os.environ.get(TF_LOG_LEVEL_ENV, "0")))
    with _stderr_filtered(lambda line: _is_below_level(line, level)):
        yield


def _min_log_level(value):
    """TensorFlow's reading of TF_CPP_MIN_LOG_LEVEL: an integer, anything else is 0."""
    try:
        return int(value)
    except ValueError:
        return 0


def _is_below_level(line, min_level):
    """True for a C++ log line (absl-formatted, the absl pre-init banner, or LiteRT's
    minimal `INFO: ...` form) that `min_level` hides."""
    if line.startswith(_PRE_INIT_BANNER):
        return min_level > 0
    match = _ABSL_LINE.match(line)
    if match:
        return _SEVERITY[match.group(1)] < min_level
    match = _LITERT_LINE.match(line)
    return bool(match) and _LITERT_SEVERITY[match.group(1)] < min_level


@contextlib.contextmanager
def _stderr_filtered(drop):
    """Captures file descriptor 2 (C++ and Python writes alike) and writes back the
    lines for which `drop(line)` is false, in order, to `sys.stderr` (so that they
    also reach a notebook). Without a usable descriptor 2, captures nothing."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        _flush(sys.stderr)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush(sys.stderr)
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not drop(line)]
            if kept:
                sys.stderr.write("".join(kept))
                _flush(sys.stderr)


def _flush(stream):
    with contextlib.suppress(Exception):
        stream.flush()
