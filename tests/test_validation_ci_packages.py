"""Under CI a test whose package is missing fails instead of skipping, and `.ci/run`
installs every extra the tests import (`test`, and `cluster` for the Ray sweep)."""

import os

import pytest

from tests.conftest import importorskip_or_fail_under_ci, under_ci
from tests.helpers import REPO


def test_a_missing_package_fails_under_ci_and_names_the_extra():
    with pytest.raises(pytest.fail.Exception,
                       match=r"needs the litert extra \(CI=true: a missing test package is a "
                             r"failure, not a skip; .ci/run installs the `test` and `cluster`"):
        importorskip_or_fail_under_ci("no_such_package_for_this_test",
                                      reason="needs the litert extra")
    # A present package is returned as pytest.importorskip returns it.
    assert importorskip_or_fail_under_ci("numpy").__name__ == "numpy"


def test_importorskip_fails_exactly_when_ci_is_set():
    expected = pytest.fail.Exception if under_ci() else pytest.skip.Exception
    with pytest.raises(expected):
        pytest.importorskip("no_such_package_for_this_test")


def test_ci_installs_the_extras_the_tests_import():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        script = f.read()
    assert '-e ".[test,cluster]"' in script and "python -m pytest -q" in script
