"""benchmarks/RESULTS.md's measured tables (and the comparison's summary.md) are the report
code's output of the committed CSVs."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_results_md_tables_match_their_csvs():
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", "update_results.py"), "--check"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "match their CSVs" in result.stdout
    blocks = int(result.stdout.split(":")[1].split()[0])
    assert blocks >= 2, result.stdout  # the recipe check and the comparison
    assert "1 summary.md" in result.stdout  # the comparison's summary.md holds the same tables
