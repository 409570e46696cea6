"""Reading tiny-training checkpoints: every broken file is a clear error naming the file.

Checkpoints come from the ``weights_dir`` fixture (``tests/conftest.py``); downloads are
refused (``offline_weights``).
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from keras_medyate.models import from_tiny_training, load_tiny_training_checkpoint
from tests.helpers import write_checkpoint

pytestmark = pytest.mark.usefixtures("offline_weights")


def test_checkpoint_is_read_as_nested_dicts(checkpoints):
    ckpt = checkpoints["mcunet_5fps"]
    assert sorted(ckpt) == ["blocks", "classifier", "feature_mix", "first_conv"]
    assert ckpt["first_conv"]["params"]["weight"].shape == (16, 3, 3, 3)


def test_truncated_file_is_a_clear_error(tmp_path, weights):
    data = (weights / "mcunet-5fps.pkl").read_bytes()
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pkl.*(corrupt|truncated)"):
        from_tiny_training(str(bad))


def test_random_bytes_are_a_clear_error(tmp_path):
    bad = tmp_path / "random.pkl"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"random\.pkl.*not a valid zip"):
        from_tiny_training(str(bad))


def _zip(path, member, data):
    """A zip container holding one member (raw bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return path


def test_corrupt_pickle_member_is_a_clear_error(tmp_path):
    bad = _zip(tmp_path / "corrupt.pkl", "archive/data.pkl", b"\x80\x02}q\x00(X\x03")
    with pytest.raises(ValueError, match=r"corrupt\.pkl.*could not be unpickled"):
        load_tiny_training_checkpoint(bad)
    empty = _zip(tmp_path / "empty.pkl", "archive/version", "3\n")
    with pytest.raises(ValueError, match=r"empty\.pkl.*data\.pkl"):
        load_tiny_training_checkpoint(empty)


def test_unsafe_pickle_is_refused(tmp_path):
    bad = _zip(tmp_path / "evil.pkl", "archive/data.pkl", b"cos\nsystem\n(S'echo hacked'\ntR.")
    with pytest.raises(ValueError, match=r"evil\.pkl.*refusing to load global os\.system"):
        load_tiny_training_checkpoint(bad)


def test_inconsistent_structure_is_a_clear_error(tmp_path, checkpoints):
    data = checkpoints["mcunet_5fps"]
    broken = {**data, "blocks": list(data["blocks"])}
    block = dict(broken["blocks"][3])
    dw = dict(block["depthwise"])
    dw["params"] = {**dw["params"], "weight": dw["params"]["weight"][:, :, :5, :5]}
    block["depthwise"] = dw
    broken["blocks"][3] = block
    path = write_checkpoint(tmp_path / "shape.pkl", broken)
    with pytest.raises(ValueError, match=r"shape\.pkl.*blocks\[3\]\.depthwise\.params\.weight"):
        from_tiny_training(str(path))
