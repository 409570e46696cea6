"""web/trainer: the page fine-tunes an exported file in headless Chromium and the loss falls.

Slow (`pytest -m slow`): exports the demo model (`web/trainer/make_demo_model.py`,
static shapes), installs the page's npm packages if missing (`npm install` in
web/trainer: @litertjs/core, playwright-core), serves the page from 127.0.0.1
only and drives Debian's chromium (`benchmarks/runtimes/setup_chromium.sh`)
in demo mode. `UPDATE_SCREENSHOT=1` rewrites `web/trainer/screenshot.png`.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

PAGE = os.path.join(REPO, "web", "trainer")

pytestmark = pytest.mark.slow


def _require_browser_tools():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed (Debian: apt-get install nodejs npm)")
    if not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        done = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "runtimes",
                                                    "setup_chromium.sh")],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"no chromium: benchmarks/runtimes/setup_chromium.sh failed: "
                        f"{done.stderr[-300:]}")
    if not os.path.isdir(os.path.join(PAGE, "node_modules", "@litertjs", "core")):
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=PAGE, capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"`npm install` in web/trainer failed: {done.stderr[-300:]}")


def test_page_trains_in_headless_chromium_and_the_loss_falls(tmp_path):
    _require_browser_tools()
    model = tmp_path / "demo.tflite"
    subprocess.run([sys.executable, os.path.join(PAGE, "make_demo_model.py"), "--out", str(model)],
                   check=True, capture_output=True, cwd=REPO)
    screenshot = (os.path.join(PAGE, "screenshot.png") if os.environ.get("UPDATE_SCREENSHOT")
                  else str(tmp_path / "screenshot.png"))
    done = subprocess.run(["node", os.path.join(PAGE, "test", "drive.mjs"), str(model), screenshot,
                           "10"], capture_output=True, text=True, timeout=600, cwd=PAGE)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["status"] == "done", result.get("error")
    history = result["history"]
    assert [h["epoch"] for h in history] == list(range(11))
    losses = [h["loss"] for h in history[1:]]
    # 24 demo images, batch 4, plain SGD: noisy per epoch, clearly lower at the end.
    assert sum(losses[-3:]) / 3 < 0.75 * losses[0], losses
    assert history[-1]["accuracy"] >= 0.75 > history[0]["accuracy"], history
    assert all(0 < h["cost"] <= 1536 for h in history[1:])  # MeDyate kept the budget
    assert len(result["steps"]) == 10 * 6 and os.path.getsize(screenshot) > 10_000
