"""Reproducing the papers' comparison: run methods × budgets × seeds, report them.

`runner` fine-tunes one model with one method and returns a result row;
`report` turns the rows into a CSV, a markdown summary and plots. The CLI is
`benchmarks/paper_comparison.py`; the demo and the notebooks use the same code.
"""

from keras_medyate.comparison.runner import (  # noqa: F401 - the package's API
    METHODS,
    RunConfig,
    build_plan,
    load_data,
    protocol_defaults,
    run_one,
)
