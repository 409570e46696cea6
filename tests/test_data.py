"""Tests of keras_medyate.data (offline: nothing is downloaded).

The real data sets come from the `data_dir`, `cifar10_tarball` and
`fashion_mnist_dir` fixtures (`tests/conftest.py`: the environment variable
first, then `<repo>/../shared/data`). Each test starts with no
`KERAS_MEDYATE_DATA_DIR` (monkeypatched, restored after the test) so that it
controls where the library looks.
"""

import gzip
import math
import os
import shutil
import struct
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_medyate.data as kmd
from keras_medyate.data import cache as cache_module
from keras_medyate.data import cifar10 as cifar10_module
from keras_medyate.data import fashion_mnist as fashion_module



def _refuse_download(*args, **kwargs):
    raise AssertionError("a test tried to download a dataset")


@pytest.fixture(autouse=True)
def offline_env(tmp_path, monkeypatch):
    """Private KERAS_HOME, no data dir (for this test only), every Keras download refused."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(kmd.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", _refuse_download)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", _refuse_download)
    monkeypatch.setattr(keras.utils, "get_file", _refuse_download)
    monkeypatch.setattr(cifar10_module, "_FAILED_DOWNLOAD", [])  # each test may try afresh


def _fast_tmpdir(tmp_path_factory):
    # Unpacking 60k small files is much faster on tmpfs than on a VM disk.
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30:
        return Path(tempfile.mkdtemp(prefix="keras_medyate_test_", dir=shm))
    return tmp_path_factory.mktemp("cifar_keras_home")


@pytest.fixture(scope="session")
def cifar_home(tmp_path_factory, data_dir):
    """A KERAS_HOME where the offline tarball was unpacked once by `load`."""
    home = _fast_tmpdir(tmp_path_factory)
    calls = []
    real_extract = cache_module._stream_extract

    def counting_extract(*args):
        calls.append(args)
        return real_extract(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(home))
        mp.setenv(kmd.DATA_DIR_ENV, data_dir)
        mp.setattr(keras.datasets.cifar10, "load_data", _refuse_download)
        mp.setattr(cache_module, "_stream_extract", counting_extract)
        _, _, info = kmd.load("cifar10", train_per_class=1, test_per_class=1)
    yield SimpleNamespace(home=home, info=info, extract_calls=len(calls))
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cifar_env(cifar_home, data_dir, monkeypatch):
    """This test's KERAS_HOME is `cifar_home`'s and KERAS_MEDYATE_DATA_DIR is `data_dir`."""
    monkeypatch.setenv("KERAS_HOME", str(cifar_home.home))
    monkeypatch.setenv(kmd.DATA_DIR_ENV, data_dir)
    return cifar_home


def _collect(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(np.asarray(array, np.uint8)))


def _make_folder_dataset(root, train_classes=("cat", "dog"), test_classes=None, per_class=2):
    """PNGs of different sizes and channel counts; pixel value = 40 * class + 10."""
    test_classes = train_classes if test_classes is None else test_classes
    shapes = [(20, 30, 3), (16, 16, 1), (12, 40, 3)]
    for split, classes in (("train", train_classes), ("test", test_classes)):
        for c, name in enumerate(sorted(classes)):
            value = 40 * sorted(train_classes).index(name) + 10 if name in train_classes else 200
            for i in range(per_class):
                shape = shapes[(i + c) % len(shapes)]
                _write_png(root / split / name / f"{i:03d}.png", np.full(shape, value))
    return root


def _write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _make_fashion_idx(folder, n_train=30, n_test=20):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28))
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


# --------------------------------------------------------------- CIFAR-10


def test_cifar10_subset_shapes_range_and_balance(cifar_env):
    train_ds, test_ds, info = kmd.load(
        "cifar10",
        image_size=48,
        batch_size=8,
        train_per_class=3,
        test_per_class=2,
        preprocess=None,
    )
    assert info.name == "cifar10"
    assert info.class_names[:3] == ("airplane", "automobile", "bird")
    assert (info.num_classes, info.num_train, info.num_test) == (10, 30, 20)
    assert info.image_size == (48, 48)
    assert info.source.startswith(str(cifar_env.home))
    assert len(train_ds) == math.ceil(30 / 8)

    x, y = next(iter(train_ds))
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    assert x.shape == (8, 48, 48, 3) and y.shape == (8,)

    images, labels = _collect(train_ds)
    assert images.shape == (30, 48, 48, 3)
    assert 0.0 <= images.min() and images.max() <= 255.0 and images.max() > 100
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [3] * 10)

    test_images, test_labels = _collect(test_ds)
    assert test_images.shape == (20, 48, 48, 3)
    np.testing.assert_array_equal(test_labels, np.repeat(np.arange(10), 2))


def test_cifar10_tiny_training_range(cifar_env):
    train_ds, _, _ = kmd.load("cifar10", image_size=32, train_per_class=2, test_per_class=1)
    images, _ = _collect(train_ds)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.5 and images.max() > 0.5


def test_cifar10_order_is_deterministic_per_seed(cifar_env):
    def epochs(seed, n=2):
        train_ds, _, _ = kmd.load(
            "cifar10",
            image_size=32,
            batch_size=50,
            train_per_class=5,
            test_per_class=1,
            seed=seed,
            preprocess=None,
        )
        return [_collect(train_ds) for _ in range(n)]

    first, again, other = epochs(0), epochs(0), epochs(1)
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    # A new order each epoch, over the same images.
    assert not np.array_equal(first[0][0], first[1][0])
    np.testing.assert_array_equal(
        np.sort(first[0][0].sum(axis=(1, 2, 3))), np.sort(first[1][0].sum(axis=(1, 2, 3)))
    )
    # Another seed selects other images.
    assert not np.array_equal(
        np.sort(first[0][0].sum(axis=(1, 2, 3))), np.sort(other[0][0].sum(axis=(1, 2, 3)))
    )


def test_cifar10_shuffle_false_keeps_class_order(cifar_env):
    train_ds, _, _ = kmd.load(
        "cifar10", image_size=32, train_per_class=2, test_per_class=1, shuffle=False
    )
    _, labels = _collect(train_ds)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 2))


def test_cifar10_tarball_unpacked_once(cifar_env, monkeypatch):
    assert cifar_env.extract_calls == 1
    tree = Path(kmd.cache_dir()) / "cifar10_jpg"
    assert Path(cifar_env.info.source) == tree
    marker = tree / cache_module.MARKER_NAME
    assert marker.is_file()
    mtime = marker.stat().st_mtime_ns

    monkeypatch.setattr(cache_module, "_stream_extract", _refuse_download)
    _, _, info = kmd.load("cifar10", image_size=32, train_per_class=1, test_per_class=1)
    assert Path(info.source) == tree
    assert marker.stat().st_mtime_ns == mtime
    assert not [p for p in tree.parent.iterdir() if "unpacking" in p.name]


def test_cifar10_data_dir_argument_takes_the_unpacked_tree(cifar_env, monkeypatch):
    monkeypatch.delenv(kmd.DATA_DIR_ENV)
    tree = Path(kmd.cache_dir()) / "cifar10_jpg"
    _, _, info = kmd.load("cifar10", data_dir=tree, train_per_class=1, test_per_class=1)
    assert info.source == str(tree)
    # The folder holding cifar10_jpg/ works too.
    _, _, info = kmd.load("cifar10", data_dir=tree.parent, train_per_class=1, test_per_class=1)
    assert info.source == str(tree)


def _make_cifar_like_tarball(tmp_path):
    root = tmp_path / "src" / "cifar10_jpg"
    _make_folder_dataset(root, train_classes=("a", "b"), per_class=2)
    tarball = tmp_path / "archive" / "cifar10_jpg.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname="cifar10_jpg")
    return tarball


def test_half_extracted_cache_is_replaced(tmp_path, monkeypatch):
    tarball = _make_cifar_like_tarball(tmp_path)
    monkeypatch.setattr(cifar10_module, "TARBALL_SHA256", cache_module.sha256_of(str(tarball)))
    stale = Path(kmd.cache_dir()) / "cifar10_jpg" / "train" / "stale_class"
    stale.mkdir(parents=True)  # an interrupted earlier run: no marker

    _, _, info = kmd.load("cifar10", data_dir=tarball.parent, image_size=8)
    assert info.class_names == ("a", "b") and info.num_train == 4
    assert not stale.exists()
    assert (Path(info.source) / cache_module.MARKER_NAME).is_file()


def test_tarball_checksum_is_verified(tmp_path):
    tarball = _make_cifar_like_tarball(tmp_path)
    with pytest.raises(ValueError, match="Checksum mismatch"):
        kmd.load("cifar10", data_dir=tarball)
    assert not (Path(kmd.cache_dir()) / "cifar10_jpg").exists()


def test_tarball_with_unsafe_member_is_refused(tmp_path):
    tarball = tmp_path / "cifar10_jpg.tar.gz"
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(evil, arcname="cifar10_jpg/../evil.txt")
    with pytest.raises(ValueError, match="Refusing to unpack"):
        cache_module.extract_tarball_once(
            str(tarball), top="cifar10_jpg", destination=str(tmp_path / "c")
        )
    assert not (tmp_path / "c" / "cifar10_jpg").exists()


def test_cifar10_keras_download_fallback(monkeypatch):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    y_train = (np.arange(40) % 10).reshape(-1, 1)
    y_test = (np.arange(20) % 10).reshape(-1, 1)
    monkeypatch.setattr(
        keras.datasets.cifar10, "load_data", lambda: ((x_train, y_train), (x_test, y_test))
    )
    train_ds, test_ds, info = kmd.load("cifar10", image_size=32, train_per_class=3, preprocess=None)
    assert "keras.datasets.cifar10" in info.source
    assert (info.num_train, info.num_test) == (30, 20)
    _, train_labels = _collect(train_ds)
    np.testing.assert_array_equal(np.bincount(train_labels), [3] * 10)
    images, labels = _collect(test_ds)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, y_test[:, 0])
    np.testing.assert_array_equal(images, x_test.astype(np.float32))


def test_cifar10_missing_falls_back_to_the_shipped_subset_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(kmd.DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match=r"(?s)CIFAR-10 was not found locally.*"
                      + kmd.DATA_DIR_ENV + r".*tried to download.*subset shipped"):
        train_ds, test_ds, info = kmd.load("cifar10", image_size=32, train_per_class=2,
                                           test_per_class=1, preprocess=None)
    assert info.source.startswith(cifar10_module.SHIPPED_SOURCE)
    assert (info.num_train, info.num_test) == (20, 10)
    images, labels = _collect(train_ds)
    assert images.shape == (20, 32, 32, 3) and np.bincount(labels).tolist() == [2] * 10
    with pytest.warns(UserWarning, match=r"download=False"):
        _, _, info = kmd.load("cifar10", download=False, train_per_class=1, test_per_class=1)
    assert info.source.startswith(cifar10_module.SHIPPED_SOURCE)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"(?s)larger than the 500 "
                                                  r"train images.*shipped with keras-medyate"):
        kmd.load("cifar10", download=False, train_per_class=501)


def test_cifar10_shipped_subset_is_the_default_selection_of_the_full_set():
    """The subset holds 500 train / 100 test images per class, with the sha256 pinned."""
    assert cache_module.sha256_of(cifar10_module.SHIPPED_SUBSET) == \
        cifar10_module.SHIPPED_SUBSET_SHA256
    assert os.path.getsize(cifar10_module.SHIPPED_SUBSET) < 3 * 2**20
    with pytest.warns(UserWarning):
        _, _, info = kmd.load("cifar10", download=False, train_per_class="all",
                              test_per_class="all")
    assert (info.num_train, info.num_test) == (5000, 1000)


def _write_python_release(folder, per_batch=3):
    """A tiny `cifar-10-batches-py/` in the standard format (pickled dicts of numpy arrays)."""
    import pickle  # noqa: PLC0415

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch * 10, 3072), dtype=np.uint8),
                 b"labels": [i % 10 for i in range(per_batch * 10)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


def test_cifar10_from_keras_own_cache_without_download(tmp_path, monkeypatch):
    """What `keras.datasets.cifar10.load_data()` left under the Keras home is found."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    batches = home / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    _write_python_release(batches)
    train_ds, test_ds, info = kmd.load("cifar10", image_size=32, preprocess=None, shuffle=False)
    assert info.source == str(batches)
    assert (info.num_train, info.num_test) == (150, 30)
    images, labels = _collect(test_ds)
    with open(batches / "test_batch", "rb") as f:
        import pickle  # noqa: PLC0415

        raw = pickle.load(f)
    expected = raw[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(images, expected.astype(np.float32))
    np.testing.assert_array_equal(labels, raw[b"labels"])
    # The same folder given by the variable (or data_dir=) works too.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "other_home"))
    monkeypatch.setenv(kmd.DATA_DIR_ENV, str(batches.parent))
    _, _, info = kmd.load("cifar10", image_size=32)
    assert info.source == str(batches)
    _, _, info = kmd.load("cifar10", image_size=32, data_dir=batches)
    assert info.source == str(batches)


def test_cifar10_batches_refuse_foreign_pickles(tmp_path, monkeypatch):
    import pickle  # noqa: PLC0415

    batches = tmp_path / "cifar-10-batches-py"
    _write_python_release(batches)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": os.system, b"labels": []}, f)
    with pytest.raises(ValueError, match="refusing to load global"):
        kmd.load("cifar10", data_dir=batches)


def test_cifar10_data_dir_without_data_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        kmd.load("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_local_idx_files(fashion_mnist_dir, monkeypatch):
    """The real files: from the Debian package's folder by default, else via the variable."""
    if fashion_mnist_dir != fashion_module.SYSTEM_DIR:
        monkeypatch.setenv(kmd.DATA_DIR_ENV, fashion_mnist_dir)
    train_ds, test_ds, info = kmd.load(
        "fashion-mnist",
        image_size=40,
        batch_size=16,
        train_per_class=2,
        test_per_class=3,
        preprocess=None,
    )
    assert info.name == "fashion_mnist"
    assert info.source == fashion_mnist_dir
    assert info.class_names[0] == "T-shirt/top" and info.num_classes == 10
    assert (info.num_train, info.num_test) == (20, 30)
    images, labels = _collect(train_ds)
    assert images.shape == (20, 40, 40, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    assert images.max() > 100 and images.min() >= 0
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [2] * 10)
    _, test_labels = _collect(test_ds)
    np.testing.assert_array_equal(np.bincount(test_labels, minlength=10), [3] * 10)
    np.testing.assert_array_equal(_collect(test_ds)[1], test_labels)  # not shuffled


def test_fashion_mnist_from_env_dir_and_data_dir(tmp_path, monkeypatch):
    _make_fashion_idx(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv(kmd.DATA_DIR_ENV, str(tmp_path / "data"))
    train_ds, _, info = kmd.load("fashion_mnist", image_size=28, preprocess=None, shuffle=False)
    assert info.source == str(tmp_path / "data" / "fashion-mnist")
    assert (info.num_train, info.num_test) == (30, 20)
    images, labels = _collect(train_ds)
    raw = kmd.read_idx(str(tmp_path / "data" / "fashion-mnist" / "train-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(images[..., 1], raw.astype(np.float32))
    np.testing.assert_array_equal(labels, np.arange(30) % 10)

    monkeypatch.delenv(kmd.DATA_DIR_ENV)
    _, _, info = kmd.load("fashion_mnist", data_dir=tmp_path / "data" / "fashion-mnist")
    assert info.source == str(tmp_path / "data" / "fashion-mnist")


def test_fashion_mnist_download_fallback_and_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_module, "SYSTEM_DIR", str(tmp_path / "no_such_dir"))
    with pytest.raises(kmd.DatasetNotFoundError, match="dataset-fashion-mnist"):
        kmd.load("fashion_mnist")
    x = np.zeros((10, 28, 28), np.uint8)
    y = np.arange(10, dtype=np.uint8)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: ((x, y), (x, y)))
    _, test_ds, info = kmd.load("fashion_mnist", image_size=16)
    assert "keras.datasets.fashion_mnist" in info.source
    images, _ = _collect(test_ds)
    assert images.shape == (10, 16, 16, 3)
    np.testing.assert_allclose(images, -1.0)


def test_idx_reader_rejects_corrupt_files(tmp_path):
    good = tmp_path / "labels.gz"
    _write_idx(good, np.arange(5))
    np.testing.assert_array_equal(kmd.read_idx(str(good)), np.arange(5))

    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad magic number"):
        kmd.read_idx(str(bad_magic))

    short = tmp_path / "short"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="holds 3 bytes"):
        kmd.read_idx(str(short))

    with pytest.raises(ValueError, match="expected 3"):
        kmd.read_idx(str(good), expected_ndim=3)

    not_gzip = tmp_path / "broken.gz"
    not_gzip.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="cannot decompress"):
        kmd.read_idx(str(not_gzip))

    folder = _make_fashion_idx(tmp_path / "fm")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(ValueError, match="Corrupt IDX file"):
        kmd.load("fashion_mnist", data_dir=folder)


# ----------------------------------------------------------------- folder


def test_folder_dataset(tmp_path):
    root = _make_folder_dataset(tmp_path / "pets", per_class=3)
    train_ds, test_ds, info = kmd.load(
        f"folder:{root}", image_size=(24, 32), batch_size=4, preprocess=None
    )
    assert info.name == f"folder:{root}" and info.source == str(root)
    assert info.class_names == ("cat", "dog")
    assert (info.num_train, info.num_test, info.image_size) == (6, 6, (24, 32))
    images, labels = _collect(train_ds)
    assert images.shape == (6, 24, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(labels), [3, 3])
    # Constant images stay constant through resize; grey PNGs become RGB.
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image, 40 * label + 10)
    _, test_labels = _collect(test_ds)
    np.testing.assert_array_equal(test_labels, [0, 0, 0, 1, 1, 1])


def test_folder_test_may_hold_fewer_classes(tmp_path):
    root = _make_folder_dataset(tmp_path / "d", train_classes=("a", "b", "c"), test_classes=("c",))
    _, test_ds, info = kmd.load(f"folder:{root}", image_size=8)
    assert info.class_names == ("a", "b", "c") and info.num_test == 2
    _, labels = _collect(test_ds)
    np.testing.assert_array_equal(labels, [2, 2])


def test_folder_relative_to_data_dir(tmp_path):
    _make_folder_dataset(tmp_path / "d")
    _, _, info = kmd.load("folder:d", data_dir=tmp_path, image_size=8)
    assert info.source == str(tmp_path / "d")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kmd.load(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no `test/` sub-folder"):
        kmd.load(f"folder:{tmp_path / 'only_train'}")
    root = _make_folder_dataset(tmp_path / "d", train_classes=("a",), test_classes=("a", "zebra"))
    with pytest.raises(ValueError, match="zebra"):
        kmd.load(f"folder:{root}")
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "test" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no image"):
        kmd.load(f"folder:{empty}")


# ------------------------------------------------------ preprocess, errors


def test_preprocess_options(tmp_path):
    root = _make_folder_dataset(tmp_path / "d")
    name = f"folder:{root}"
    _, raw_ds, _ = kmd.load(name, image_size=8, preprocess=None)
    _, tiny_ds, _ = kmd.load(name, image_size=8, preprocess="tiny_training")
    _, custom_ds, _ = kmd.load(name, image_size=8, preprocess=lambda x: x / 255.0)
    raw, _ = _collect(raw_ds)
    np.testing.assert_allclose(_collect(tiny_ds)[0], raw / 127.5 - 1.0, atol=1e-6)
    custom = _collect(custom_ds)[0]
    assert custom.dtype == np.float32
    np.testing.assert_allclose(custom, raw / 255.0, atol=1e-6)

    with pytest.raises(ValueError, match="tiny_training"):
        kmd.load(name, preprocess="imagenet")
    with pytest.raises(ValueError, match="callable"):
        kmd.load(name, preprocess=3)


def test_scale_to_unit_range():
    out = kmd.scale_to_unit_range(np.array([0, 127.5, 255]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 0.0, 1.0])
    tensor = kmd.scale_to_unit_range(tf.constant([[0, 255]], tf.uint8))
    assert tensor.dtype == tf.float32
    np.testing.assert_allclose(tensor.numpy(), [[-1.0, 1.0]])


def test_unknown_name_lists_accepted_forms():
    with pytest.raises(ValueError) as err:
        kmd.load("imagenet")
    for form in ("cifar10", "fashion_mnist", "folder:"):
        assert form in str(err.value)
    with pytest.raises(ValueError, match="has no path"):
        kmd.load("folder:")


def test_per_class_larger_than_available(tmp_path):
    root = _make_folder_dataset(tmp_path / "d", per_class=2)
    with pytest.raises(ValueError, match=r"train_per_class=3.*'cat'"):
        kmd.load(f"folder:{root}", train_per_class=3)
    with pytest.raises(ValueError, match="test_per_class=5"):
        kmd.load(f"folder:{root}", test_per_class=5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": (8, 8, 3)}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"train_per_class": 0}, "train_per_class"),
        ({"test_per_class": 1.5}, "test_per_class"),
        ({"seed": -1}, "seed"),
    ],
)
def test_argument_validation(tmp_path, kwargs, message):
    root = _make_folder_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match=message):
        kmd.load(f"folder:{root}", **kwargs)


def test_cache_dir_honours_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert kmd.cache_dir() == str(tmp_path / "kh" / "keras_medyate" / "datasets")
