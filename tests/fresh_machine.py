"""A subprocess environment like a fresh machine: no network, no variable, an empty home.

Used by the tests of the README's instructions (`tests/test_demo.py`,
`tests/test_readme.py`): what the README tells a new user to run must work
with nothing but the installed package.
"""

import os

from tests.helpers import REPO

#: Makes every DNS look-up fail in the child process, as on a machine with no network.
NO_NETWORK = """\
import socket

def _offline(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "no network (tests/fresh_machine.py)")

socket.getaddrinfo = _offline
"""


def fresh_machine_env(tmp_path):
    """The environment of a child process: the keras-medyate variables and
    `KERAS_HOME` unset, `HOME` an empty folder (no Keras cache), no network."""
    home = tmp_path / "home"
    home.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KERAS_MEDYATE_") and k not in ("KERAS_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(site), REPO]))
    return env
