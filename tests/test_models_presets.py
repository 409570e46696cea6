"""Presets: names → local checkpoint files, the checksums, the resolution order and the download.

Checkpoints come from the ``weights_dir`` fixture (``tests/conftest.py``); downloads are
refused (``offline_weights``) unless a test replaces the download function itself.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from keras_medyate.models import (
    PRESETS,
    from_tiny_training,
    mcunet_5fps,
    proxylessnas_w03,
    resolve_weights,
)
from keras_medyate.models import presets as presets_module

pytestmark = pytest.mark.usefixtures("offline_weights")


def test_explicit_path_with_sha256(weights):
    path = str(weights / "mbv2-w0.35.pkl")
    model = from_tiny_training(path, include_top=False,
                               sha256=PRESETS["mobilenetv2_w035"]["sha256"])
    assert model.name == "mbv2_w0_35"
    with pytest.raises(ValueError, match=r"(?s)mbv2-w0\.35\.pkl.*expected SHA-256 0{64}"):
        from_tiny_training(path, sha256="0" * 64)


def test_wrong_checksum_is_a_clear_error(tmp_path, monkeypatch, weights):
    data = bytearray((weights / "mcunet-5fps.pkl").read_bytes())
    data[-100] ^= 0xFF
    local = tmp_path / "weights"
    local.mkdir()
    (local / "mcunet-5fps.pkl").write_bytes(bytes(data))
    monkeypatch.setenv("KERAS_MEDYATE_WEIGHTS_DIR", str(local))
    expected = PRESETS["mcunet_5fps"]["sha256"]
    with pytest.raises(ValueError, match=rf"(?s)mcunet-5fps\.pkl.*expected SHA-256 {expected}"):
        from_tiny_training("mcunet_5fps")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        mcunet_5fps(weights=str(local / "mcunet-5fps.pkl"))
    # A preset builder given another preset's file is caught the same way.
    with pytest.raises(ValueError, match="Checksum mismatch"):
        mcunet_5fps(weights=str(weights / "mbv2-w0.35.pkl"))


# ---------------------------------------------------------------------------------------
# Resolution order and download
# ---------------------------------------------------------------------------------------


def test_resolution_order(tmp_path, monkeypatch, weights_dir):
    source = pathlib.Path(weights_dir) / "mcunet-5fps.pkl"
    explicit, env_dir, arg_dir = tmp_path / "explicit.pkl", tmp_path / "env", tmp_path / "arg"
    keras_home = tmp_path / "home"
    cache = keras_home / "keras_medyate" / "weights"
    for d in (env_dir, arg_dir, cache):
        d.mkdir(parents=True)
        shutil.copy(source, d / "mcunet-5fps.pkl")
    shutil.copy(source, explicit)
    monkeypatch.setenv("KERAS_MEDYATE_WEIGHTS_DIR", str(env_dir))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    calls = []

    def fake_download(url, fname, sha256, cache_dir):
        calls.append((url, fname, sha256, cache_dir))
        target = pathlib.Path(cache_dir) / "keras_medyate" / "weights" / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        return str(target)

    monkeypatch.setattr(presets_module, "_download", fake_download)

    assert resolve_weights(str(explicit)) == str(explicit)
    assert resolve_weights("mcunet_5fps", weights_dir=arg_dir) == str(arg_dir / "mcunet-5fps.pkl")
    assert resolve_weights("mcunet_5fps") == str(env_dir / "mcunet-5fps.pkl")
    assert resolve_weights("mcunet-5fps.pkl") == str(env_dir / "mcunet-5fps.pkl")
    (env_dir / "mcunet-5fps.pkl").unlink()
    assert resolve_weights("mcunet_5fps") == str(cache / "mcunet-5fps.pkl")
    monkeypatch.delenv("KERAS_MEDYATE_WEIGHTS_DIR")
    assert resolve_weights("mcunet_5fps") == str(cache / "mcunet-5fps.pkl")
    assert calls == []
    (cache / "mcunet-5fps.pkl").unlink()
    # The copy shipped with the package: the default works offline, with no variable.
    shipped = resolve_weights("mcunet_5fps")
    assert shipped == os.path.join(presets_module.SHIPPED_DIR, "mcunet-5fps.pkl")
    assert os.path.isfile(os.path.join(presets_module.SHIPPED_DIR, "LICENSE.tiny-training"))
    assert calls == []
    monkeypatch.setattr(presets_module, "SHIPPED_DIR", str(tmp_path / "no_assets"))
    assert resolve_weights("mcunet_5fps") == str(cache / "mcunet-5fps.pkl")
    spec = PRESETS["mcunet_5fps"]
    assert calls == [(spec["url"], "mcunet-5fps.pkl", spec["sha256"], str(keras_home))]
    assert spec["url"].endswith("/algorithm/assets/mcu_models/mcunet-5fps.pkl")


def test_preset_without_checksum_is_checked_for_structure(tmp_path, monkeypatch, weights_dir):
    keras_home = tmp_path / "home"
    monkeypatch.delenv("KERAS_MEDYATE_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    payload = {"bytes": (pathlib.Path(weights_dir) / "mbv2-w0.35.pkl").read_bytes()}

    def fake_download(url, fname, sha256, cache_dir):
        assert sha256 is None and fname == "proxyless-w0.3.pkl"
        target = pathlib.Path(cache_dir) / "keras_medyate" / "weights" / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload["bytes"])
        return str(target)

    monkeypatch.setattr(presets_module, "_download", fake_download)
    with pytest.warns(UserWarning, match="no pinned SHA-256"):
        model = proxylessnas_w03(include_top=False)
    assert model.name == "proxylessnas_w03"
    (keras_home / "keras_medyate" / "weights" / "proxyless-w0.3.pkl").unlink()
    payload["bytes"] = b"not a checkpoint"
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="not a valid zip"):
        resolve_weights("proxylessnas_w03")


def test_presets_are_complete():
    assert set(PRESETS) == {"mcunet_5fps", "mobilenetv2_w035", "proxylessnas_w03"}
    for spec in PRESETS.values():
        assert spec["url"].endswith("/" + spec["file"]) and spec["description"]
    assert PRESETS["mobilenetv2_w035"]["sha256"] == (
        "310d2871c50a89af9f11928e28418729984c2e402cf68560a19b6cbb75854163")
    assert PRESETS["proxylessnas_w03"]["sha256"] is None


def test_failed_download_says_how_to_work_offline(monkeypatch, tmp_path):
    from keras_medyate.models import presets as presets_module

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.delenv("KERAS_MEDYATE_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(presets_module, "_download", offline)
    with pytest.raises(FileNotFoundError, match="downloading it from .* failed: Name or service not known.*KERAS_MEDYATE_WEIGHTS_DIR"):
        presets_module.resolve_weights("mobilenetv2_w035")  # not shipped with the package
