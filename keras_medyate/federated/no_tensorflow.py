"""Makes TensorFlow unimportable in a process: the simulated phones run LiteRT only.

Flower's simulation engine runs each `ClientApp` in a Ray worker, and
importing Flower's simulation package there imports TensorFlow when it is
installed (`flwr.simulation.ray_transport.utils` tries it at import time,
for its GPU-memory helper). A phone has no TensorFlow, so
`keras_medyate.federated.simulation` starts its Ray workers with `block` as
their setup hook: any import of `tensorflow` (or of `keras`, which needs it)
then fails with `ModuleNotFoundError`, which Flower's optional import
accepts, and a client that needed TensorFlow would fail loudly instead of
silently using it. The client reports `"tensorflow" in sys.modules` in
every reply (`tensorflow-imported`), which the tests check.
"""

import importlib.abc
import sys

#: Top-level packages that cannot be imported after `block()`.
BLOCKED = ("tensorflow", "keras", "tf_keras")
MESSAGE = ("No module named {name!r}: keras_medyate.federated runs its simulated phones "
           "without TensorFlow (LiteRT only); see keras_medyate/federated/no_tensorflow.py.")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(MESSAGE.format(name=fullname), name=fullname)
        return None


def block():
    """Installs the import blocker in this process (idempotent).

    Raises:
        RuntimeError: TensorFlow is already imported here.
    """
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if loaded:
        raise RuntimeError(f"Cannot block TensorFlow: {loaded[:3]} already imported.")
    if not any(isinstance(finder, _Blocker) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Blocker())
