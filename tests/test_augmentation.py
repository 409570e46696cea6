"""Training augmentation: seeded, new every epoch, training split only."""

import numpy as np
import pytest

from keras_medyate.data import Augmentation
from keras_medyate.data.pipeline import Split, build_pipeline


def split(n=24, size=16, channels=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    return Split(labels=np.arange(n, dtype=np.int32) % 3, images=images)


def epoch(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def pipeline(augmentation, seed=1, shuffle=True, data=None):
    return build_pipeline(data or split(), (12, 12), 8, shuffle, seed, None, augmentation)


def test_same_seed_same_images_new_draw_each_epoch():
    augmentation = Augmentation(color_jitter=0.4)
    first, second = pipeline(augmentation), pipeline(augmentation)
    a1, y1 = epoch(first)
    b1, _ = epoch(second)
    np.testing.assert_array_equal(a1, b1)
    a2, y2 = epoch(first)
    assert not np.allclose(a1, a2)
    assert sorted(y1) == sorted(y2)
    assert a1.shape == (24, 12, 12, 3) and a1.dtype == np.float32
    assert a1.min() >= 0 and a1.max() <= 255


def test_other_seed_other_images():
    a, _ = epoch(pipeline(Augmentation(), seed=1, shuffle=False))
    b, _ = epoch(pipeline(Augmentation(), seed=2, shuffle=False))
    assert not np.allclose(a, b)


def test_full_crop_without_flip_is_the_plain_resize():
    plain, _ = epoch(pipeline(None, shuffle=False))
    whole = Augmentation(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), horizontal_flip=False)
    cropped, _ = epoch(pipeline(whole, shuffle=False))
    np.testing.assert_allclose(cropped, plain, atol=1e-3)


def test_flip_only_mirrors_some_images():
    flip = Augmentation(crop_scale=None, horizontal_flip=True)
    plain, _ = epoch(pipeline(None, shuffle=False))
    flipped, _ = epoch(pipeline(flip, shuffle=False))
    same = [np.allclose(f, p) for f, p in zip(flipped, plain)]
    mirrored = [np.allclose(f, p[:, ::-1]) for f, p in zip(flipped, plain)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 0 < sum(mirrored) < len(mirrored)


def test_grey_images_become_rgb():
    grey = split(channels=1)
    x, _ = epoch(pipeline(Augmentation(color_jitter=0.2), data=grey))
    assert x.shape[-1] == 3
    np.testing.assert_array_equal(x[..., 0], x[..., 1])


@pytest.mark.parametrize("kwargs, message", [
    ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
    ({"crop_scale": (0.5, 0.2)}, "crop_scale"),
    ({"crop_ratio": (2.0, 1.0)}, "crop_ratio"),
    ({"color_jitter": 1.5}, "color_jitter"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**kwargs)


def test_load_augments_the_training_split_only(tmp_path):
    from PIL import Image

    from keras_medyate import data

    for part in ("train", "test"):
        for name in ("a", "b"):
            folder = tmp_path / part / name
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    train_ds, test_ds, _ = data.load(f"folder:{tmp_path}", image_size=10, augment=True)
    _, plain_test, _ = data.load(f"folder:{tmp_path}", image_size=10)
    np.testing.assert_array_equal(epoch(test_ds)[0], epoch(plain_test)[0])
    with pytest.raises(ValueError, match=r"`augment` must be True"):
        data.load(f"folder:{tmp_path}", augment="yes")
