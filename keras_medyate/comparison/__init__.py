"""Reproducing the papers' comparison: run methods × budgets × seeds, report them.

`runner` fine-tunes one model with one method and returns a result row;
`report` turns the rows into a CSV, a markdown summary and plots; `settings`
holds what a run is (methods, protocols, `RunConfig`) without importing
TensorFlow. The CLI is `benchmarks/paper_comparison.py` (its command-line
plumbing, `--help` and one-line errors, is `keras_medyate.cli`); the demo and
the notebooks use the same code.

Attributes are loaded lazily, so `import keras_medyate.comparison.settings`
does not import TensorFlow.
"""

_EXPORTS = {
    "METHODS": "settings",
    "RunConfig": "settings",
    "protocol_defaults": "settings",
    "build_plan": "runner",
    "load_data": "runner",
    "run_one": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    import importlib  # noqa: PLC0415

    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name in ("flags", "report", "runner", "settings"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
