"""Architecture → Keras: tiny-training checkpoints as float Keras models, checked numerically.

The checkpoints are read from the folder of the ``weights_dir`` fixture (``tests/conftest.py``:
``$KERAS_MEDYATE_WEIGHTS_DIR``, else ``<repo>/../shared/data/weights``) and never downloaded
(the ``offline_weights`` fixture refuses downloads). CIFAR-10 comes from the
``cifar10_tarball`` fixture.

Numerical correctness is checked without photos from the internet:

* a numpy implementation (below) of the checkpoint's int8 arithmetic (integer
  convolutions on zero-point-centred inputs, int32 bias, per-channel requantization
  and clamping, requantized residual adds, rounded average pooling) is run on real
  images; every Keras layer, fed the reference's own (dequantized) input, must
  reproduce the reference's output to within half a quantization step, and the whole
  float network's logits must track the int8 network's;
* the first convolution is compared with a direct numpy convolution of the
  dequantized weights with symmetric padding;
* CIFAR-10 test JPEGs (upsampled 32 -> 128 px) must get ImageNet classes of the right
  super-category far more often than chance.
"""

from __future__ import annotations

import pathlib
import re
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medyate.models import (
    BoundedReLU,
    from_tiny_training,
    load_tiny_training_checkpoint,
    mcunet_5fps,
    mobilenetv2_w035,
    preprocess_input,
)
from tests.helpers import MODEL_FILES as MODELS
from tests.helpers import write_checkpoint

pytestmark = pytest.mark.usefixtures("offline_weights")


@pytest.fixture(scope="module")
def models(weights_dir):
    folder = pathlib.Path(weights_dir)
    return {name: from_tiny_training(str(folder / f), name=name) for name, f in MODELS.items()}


# ---------------------------------------------------------------------------------------
# Helpers: checkpoint traversal and the int8 reference (numpy only)
# ---------------------------------------------------------------------------------------


def conv_entries(ckpt):
    """(keras layer name, checkpoint entry) of every convolution, in network order."""
    out = [("first_conv", ckpt["first_conv"])]
    for i, block in enumerate(ckpt["blocks"]):
        for key, suffix in (("pointwise1", "expand"), ("depthwise", "depthwise"),
                            ("pointwise2", "project")):
            if block[key] is not None:
                out.append((f"block{i}_{suffix}", block[key]))
    if ckpt.get("feature_mix") is not None:
        out.append(("feature_mix", ckpt["feature_mix"]))
    return out


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _patches(x, kh, kw, stride):
    n, h, w, c = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    sn, sh, sw, sc = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (sn, sh * stride, sw * stride, sh, sw, sc), writeable=False
    )


def numpy_conv(x, weight, bias, stride, groups):
    """Direct NHWC convolution with PyTorch-layout weights and symmetric k//2 padding."""
    kh, kw = weight.shape[2:]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    p = _patches(xp, kh, kw, stride)
    if groups == 1:
        out = np.einsum("nhwijc,ocij->nhwo", p, weight, optimize=True)
    else:
        assert groups == x.shape[-1] == weight.shape[0]
        out = np.einsum("nhwijc,cij->nhwc", p, weight[:, 0], optimize=True)
    return out + bias


def _requantize(acc, params):
    m = params["x_scale"] * params["w_scales"].astype(np.float64) / params["y_scale"]
    return np.clip(np.round(acc * m) + params["y_zero"], -128, 127)


def _qconv(q, conv):
    p = conv["params"]
    acc = numpy_conv(q - p["x_zero"], p["weight"].astype(np.float64),
                     p["bias"].astype(np.float64), _pair(conv["stride"])[0], conv["groups"])
    return _requantize(acc, p)


def int8_reference(ckpt, x):
    """Runs the checkpoint's int8 arithmetic on float images in [-1, 1].

    Returns (logits, records); logits are the classifier accumulators in real units
    (before the final int8 requantization), and each record is
    (keras layer name, op kind, dequantized inputs, dequantized output, output range, step).
    """
    def deq(q, scale, zero):
        return (q - zero) * scale

    p = ckpt["first_conv"]["params"]
    q = np.clip(np.round(x.astype(np.float64) / p["x_scale"]) + p["x_zero"], -128, 127)
    scale, zero = p["x_scale"], p["x_zero"]
    records = []

    def conv(name, c, q, scale, zero):
        cp = c["params"]
        assert np.isclose(cp["x_scale"], scale) and cp["x_zero"] == zero, name
        out = _qconv(q, c)
        rng = ((-128 - cp["y_zero"]) * cp["y_scale"], (127 - cp["y_zero"]) * cp["y_scale"])
        records.append((name, "conv", [deq(q, scale, zero)],
                        deq(out, cp["y_scale"], cp["y_zero"]), rng, cp["y_scale"]))
        return out, cp["y_scale"], cp["y_zero"]

    q, scale, zero = conv("first_conv", ckpt["first_conv"], q, scale, zero)
    for i, block in enumerate(ckpt["blocks"]):
        q_in, s_in, z_in = q, scale, zero
        for key, suffix in (("pointwise1", "expand"), ("depthwise", "depthwise"),
                            ("pointwise2", "project")):
            if block[key] is not None:
                q, scale, zero = conv(f"block{i}_{suffix}", block[key], q, scale, zero)
        if block["residual"] is not None:
            rp = block["residual"]["params"]
            assert np.isclose(rp["x_scale"], s_in) and rp["x_zero"] == z_in
            a, b = deq(q, scale, zero), deq(q_in, s_in, z_in)
            q = np.clip(np.round((a + b) / rp["y_scale"]) + rp["y_zero"], -128, 127)
            scale, zero = rp["y_scale"], rp["y_zero"]
            rng = ((-128 - zero) * scale, (127 - zero) * scale)
            records.append((f"block{i}_add", "add", [a, b], deq(q, scale, zero), rng, scale))
    if ckpt.get("feature_mix") is not None:
        q, scale, zero = conv("feature_mix", ckpt["feature_mix"], q, scale, zero)
    pooled = np.round(q.mean(axis=(1, 2)))
    records.append(("global_pool", "pool", [deq(q, scale, zero)], deq(pooled, scale, zero),
                    (-np.inf, np.inf), scale))
    cp = ckpt["classifier"]["params"]
    assert np.isclose(cp["x_scale"], scale) and cp["x_zero"] == zero
    w = cp["weight"][:, :, 0, 0].astype(np.float64)
    acc = (pooled - zero) @ w.T + cp["bias"]
    logits = acc * cp["x_scale"] * cp["w_scales"]
    records.append(("classifier", "dense", [deq(pooled, scale, zero)], logits,
                    (-np.inf, np.inf), 1e-9))
    return logits, records


def apply_keras_op(model, name, kind, inputs):
    """Applies the Keras layers implementing one checkpoint op to numpy inputs."""
    names = {layer.name for layer in model.layers}
    if kind == "add":
        return np.asarray(model.get_layer(name)([np.float32(v) for v in inputs]))
    x = np.float32(inputs[0])
    for layer_name in (f"{name}_pad", name, f"{name}_relu"):
        if layer_name in names:
            x = model.get_layer(layer_name)(x)
    return np.asarray(x)


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
ANIMALS = {"bird", "cat", "deer", "dog", "frog", "horse"}
# ImageNet-1k class ids of the matching fine categories (well-known indices).
IMAGENET_IDS = {
    "airplane": {404, 895, 908, 405, 812},  # airliner, warplane, wing, airship, space shuttle
    "automobile": {436, 468, 511, 609, 627, 656, 661, 717, 751, 817, 479, 581, 734, 705},
    "bird": set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147)),
    "cat": set(range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "deer": {348, 349, 350, 351, 352, 353},  # ram, bighorn, ibex, hartebeest, impala, gazelle
    "dog": set(range(151, 269)),
    "frog": {30, 31, 32},  # bullfrog, tree frog, tailed frog
    "horse": {339, 603},  # sorrel, horse cart
    # container ship, liner, fireboat, lifeboat, speedboat, yawl, catamaran, pirate,
    # schooner, trimaran, submarine, gondola, canoe, aircraft carrier, wreck, paddle
    "ship": {510, 628, 554, 625, 814, 914, 484, 724, 780, 871, 833, 576, 472, 403, 913, 693},
    # fire engine, garbage truck, moving van, pickup, tow truck, trailer truck,
    # police van, minivan
    "truck": {555, 569, 675, 717, 864, 867, 734, 656},
}
# ImageNet-1k ids 0..397 are animals, 398..999 objects, scenes, food and plants.
FIRST_NON_ANIMAL_ID = 398


@pytest.fixture(scope="module")
def cifar_images(tmp_path_factory, cifar10_tarball):
    """The first 20 test images of every CIFAR-10 class, upsampled to 128x128 (uint8)."""
    per_class = 20
    out_dir = tmp_path_factory.mktemp("cifar10")
    files = {c: [] for c in CIFAR_CLASSES}
    with tarfile.open(cifar10_tarball) as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] != "test":
                continue
            cls = parts[2]
            if len(files[cls]) < per_class:
                target = out_dir / f"{cls}_{parts[3]}"
                target.write_bytes(archive.extractfile(member).read())
                files[cls].append(target)
            if all(len(v) == per_class for v in files.values()):
                break
    images, labels = [], []
    for label, cls in enumerate(CIFAR_CLASSES):
        for path in files[cls]:
            images.append(tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy())
            labels.append(label)
    images = np.stack(images).astype(np.float32)
    big = tf.image.resize(images, (128, 128), method="bilinear").numpy()
    return np.clip(np.round(big), 0, 255).astype(np.uint8), np.array(labels)


# ---------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_architecture_matches_checkpoint(name, checkpoints, models):
    ckpt, model = checkpoints[name], models[name]
    entries = conv_entries(ckpt)
    conv_layers = [layer for layer in model.layers
                   if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert [layer.name for layer in conv_layers] == [n for n, _ in entries]
    for layer, (_, entry) in zip(conv_layers, entries, strict=True):
        p = entry["params"]
        assert layer.count_params() == p["weight"].size + p["bias"].size, layer.name
        assert layer.use_bias
        # Symmetric k // 2 padding: "same" at stride 1, an explicit pad layer at stride 2.
        padded = f"{layer.name}_pad" in {other.name for other in model.layers}
        if tuple(layer.strides) == (1, 1):
            assert layer.padding == "same" and not padded, layer.name
        else:
            assert layer.padding == "valid"
            assert padded == (max(layer.kernel_size) > 1), layer.name
        assert tuple(layer.kernel_size) == tuple(entry["kernel_size"])
        assert tuple(layer.strides) == _pair(entry["stride"])
        assert isinstance(layer, keras.layers.DepthwiseConv2D) == (entry["groups"] > 1)
    dense = model.get_layer("classifier")
    p = ckpt["classifier"]["params"]
    assert dense.count_params() == p["weight"].size + p["bias"].size
    assert tuple(dense.kernel.shape) == (p["weight"].shape[1], p["weight"].shape[0])
    total = sum(e["params"]["weight"].size + e["params"]["bias"].size for _, e in entries)
    assert model.count_params() == total + p["weight"].size + p["bias"].size
    n_res = sum(b["residual"] is not None for b in ckpt["blocks"])
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == n_res
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)

    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    pattern = re.compile(
        r"^(image|first_conv(_pad|_relu)?|block\d+_(expand|depthwise|project|shortcut)"
        r"(_pad|_relu)?|block\d+_add|feature_mix(_pad|_relu)?|global_pool|classifier|predictions)$"
    )
    assert all(pattern.match(n) for n in names), [n for n in names if not pattern.match(n)]
    assert model.output_shape == (None, 1000)
    assert model.layers[-1].name == "predictions"


def test_activation_clipping_comes_from_output_quantization_range(checkpoints, models, weights):
    ckpt, model = checkpoints["mcunet_5fps"], models["mcunet_5fps"]
    names = {layer.name for layer in model.layers}
    bounds = []
    for name, entry in conv_entries(ckpt):
        p = entry["params"]
        if p["y_zero"] == -128:  # range starts at 0: a (clipped) ReLU
            relu = model.get_layer(f"{name}_relu")
            assert relu.max_value == pytest.approx(255 * p["y_scale"], rel=1e-6)
            bounds.append(255 * p["y_scale"])
        else:  # projections are linear
            assert f"{name}_relu" not in names
    assert max(bounds) == pytest.approx(6.0)  # ReLU6 where calibration kept the full range
    assert model.get_layer("first_conv_relu").max_value == 6.0  # snapped to an exact ReLU6
    assert min(bounds) < 3.0
    relu6 = from_tiny_training("mcunet_5fps", clip="relu6")
    assert {layer.max_value for layer in relu6.layers
            if isinstance(layer, keras.layers.ReLU)} == {6.0}


# ---------------------------------------------------------------------------------------
# Numerical correctness
# ---------------------------------------------------------------------------------------


def test_first_conv_matches_direct_numpy_convolution(checkpoints, models, cifar_images):
    ckpt, model = checkpoints["mcunet_5fps"], models["mcunet_5fps"]
    x = preprocess_input(cifar_images[0][::50])
    p = ckpt["first_conv"]["params"]
    w = p["weight"].astype(np.float64) * p["w_scales"][:, None, None, None]
    b = p["bias"] * p["x_scale"] * p["w_scales"].astype(np.float64)
    expected = np.clip(numpy_conv(x.astype(np.float64), w, b, 2, 1), 0, 255 * p["y_scale"])
    probe = keras.Model(model.input, model.get_layer("first_conv_relu").output)
    got = probe.predict(x, verbose=0)
    assert got.shape == (len(x), 64, 64, 16)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # Keras' "same" padding is asymmetric at stride 2 and would not match.
    same = keras.layers.Conv2D(16, 3, strides=2, padding="same")
    same.build(x.shape)
    same.set_weights(model.get_layer("first_conv").get_weights())
    assert np.abs(np.clip(np.asarray(same(x)), 0, 6) - expected).max() > 0.1


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_matches_int8_reference(name, checkpoints, models, cifar_images):
    """Each Keras op, fed the int8 net's own input, reproduces its output to half a step."""
    ckpt, model = checkpoints[name], models[name]
    x = preprocess_input(cifar_images[0][::40])  # 5 images, one per other class
    _, records = int8_reference(ckpt, x)
    assert len(records) == len(conv_entries(ckpt)) + sum(
        b["residual"] is not None for b in ckpt["blocks"]) + 2
    worst = 0.0
    for layer_name, kind, inputs, expected, (lo, hi), step in records:
        got = apply_keras_op(model, layer_name, kind, inputs).astype(np.float64)
        assert got.shape == expected.shape, layer_name
        err = np.abs(np.clip(got, lo, hi) - expected) / step
        if kind == "dense":
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
            continue
        # Half a quantization step of rounding, plus float32 accumulation noise.
        assert err.max() <= 0.5 + 1e-3, (layer_name, err.max())
        worst = max(worst, float(err.max()))
    assert worst > 0.4  # the comparison is not vacuous: rounding differences do show


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float_model_tracks_int8_network(name, checkpoints, models, cifar_images):
    ckpt, model = checkpoints[name], models[name]
    x = preprocess_input(cifar_images[0][::10])  # 20 images, 2 per class
    ref_logits, _ = int8_reference(ckpt, x)
    logits = keras.Model(model.input, model.get_layer("classifier").output).predict(
        x, verbose=0)
    corr = np.corrcoef(logits.ravel(), ref_logits.ravel())[0, 1]
    ref_top1_in_top5 = np.mean([r.argmax() in np.argsort(-f)[:5]
                                for f, r in zip(logits, ref_logits, strict=True)])
    top1 = np.mean(logits.argmax(1) == ref_logits.argmax(1))
    print(f"{name}: float vs int8 logits corr {corr:.3f}, top-1 agreement {top1:.2f}, "
          f"int8 top-1 within float top-5 {ref_top1_in_top5:.2f}")
    # Measured: corr 0.976 / 0.964, int8 top-1 within float top-5 0.95 / 0.95 (mcunet /
    # mbv2); top-1 agreement is only ~0.7 because upsampled CIFAR images give flat,
    # low-margin ImageNet posteriors that the int8 rounding noise reorders.
    assert corr > 0.93
    assert ref_top1_in_top5 >= 0.8
    assert top1 >= 0.35


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cifar10_images_get_matching_imagenet_classes(name, models, cifar_images):
    model = models[name]
    images, labels = cifar_images
    probs = model.predict(preprocess_input(images), verbose=0, batch_size=50)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    top1, top5 = probs.argmax(1), np.argsort(-probs, 1)[:, :5]
    classes = [CIFAR_CLASSES[i] for i in labels]
    fine1 = np.mean([t in IMAGENET_IDS[c] for t, c in zip(top1, classes, strict=True)])
    fine5 = np.mean([bool(set(t) & IMAGENET_IDS[c]) for t, c in zip(top5, classes, strict=True)])
    chance1 = np.mean([len(IMAGENET_IDS[c]) / 1000 for c in classes])
    is_animal = np.array([c in ANIMALS for c in classes])
    super1 = np.mean(np.where(is_animal, top1 < FIRST_NON_ANIMAL_ID,
                              top1 >= FIRST_NON_ANIMAL_ID))
    super_chance = np.mean(np.where(is_animal, FIRST_NON_ANIMAL_ID / 1000,
                                    1 - FIRST_NON_ANIMAL_ID / 1000))
    # Probability mass on a class's ImageNet ids: its own images vs the other classes'.
    ratios = {}
    for label, cls in enumerate(CIFAR_CLASSES):
        mass = probs[:, sorted(IMAGENET_IDS[cls])].sum(1)
        ratios[cls] = mass[labels == label].mean() / mass[labels != label].mean()
    flipped = model.predict(preprocess_input(images[:, :, ::-1]), verbose=0, batch_size=50)
    flip_agree = np.mean(flipped.argmax(1) == top1)
    print(f"{name}: animal/object top-1 {super1:.2f} (chance {super_chance:.2f}); "
          f"fine top-1 {fine1:.3f} top-5 {fine5:.3f} (chance top-1 {chance1:.3f}); "
          f"flip top-1 agreement {flip_agree:.2f}; mean max prob {probs.max(1).mean():.2f}; "
          f"own/other mass ratios {[round(float(r), 1) for r in ratios.values()]}")
    # Measured on these 200 images: animal/object 0.72 (mcunet) / 0.76 (mbv2) vs chance
    # 0.48; fine top-1 0.08 / 0.055 and top-5 0.20 / 0.17 vs chance top-1 0.024 (32 px
    # images upsampled 4x are far from ImageNet photos); own/other mass ratio 1.9-14.6,
    # at least 2.0 for 19 of the 20 (model, class) pairs; flip agreement ~0.6.
    assert super1 > super_chance + 0.15
    assert fine1 > 1.5 * chance1
    assert fine5 > 3 * chance1
    assert min(ratios.values()) > 1.5
    assert np.median(list(ratios.values())) > 2.5
    assert flip_agree > 0.4


def test_sample_portrait_is_a_military_uniform(models, weights):
    """matplotlib's sample photo of Grace Hopper in uniform (a file shipped with matplotlib)."""
    matplotlib = pytest.importorskip(
        "matplotlib", reason="needs the test extra: pip install -e '.[test]'")
    path = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    assert path.is_file(), f"{path} is missing: this matplotlib ships no sample photo"
    img = tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()
    h, w, _ = img.shape
    s = min(h, w)
    crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = tf.image.resize(crop[None].astype(np.float32), (128, 128), antialias=True).numpy()
    military_uniform = 652
    for name, model in models.items():
        probs = model.predict(preprocess_input(x), verbose=0)[0]
        top5 = np.argsort(-probs)[:5]
        assert military_uniform in top5, (name, top5)
        # The int8 network ranks the same classes (measured: identical top-5 sets).
        ref_logits, _ = int8_reference(load_tiny_training_checkpoint(weights / MODELS[name]),
                                       preprocess_input(x))
        assert len(set(top5) & set(np.argsort(-ref_logits[0])[:5])) >= 4
        assert ref_logits[0].argmax() == probs.argmax()
    assert models["mcunet_5fps"].predict(preprocess_input(x), verbose=0).argmax() == 652


# ---------------------------------------------------------------------------------------
# Heads and input shapes
# ---------------------------------------------------------------------------------------


def test_new_head_keeps_backbone(models, weights):
    base = models["mcunet_5fps"]
    model = mcunet_5fps(classes=10)
    assert model.output_shape == (None, 10)
    head = model.get_layer("classifier")
    assert tuple(head.kernel.shape) == (160, 10)
    np.testing.assert_array_equal(np.asarray(head.bias), np.zeros(10))
    assert model.layers[-1].name == "predictions"
    for layer in model.layers:
        if layer.name != "classifier":
            reference = base.get_layer(layer.name).get_weights()
            for a, b in zip(layer.get_weights(), reference, strict=True):
                np.testing.assert_array_equal(a, b)
    probs = model.predict(np.zeros((2, 128, 128, 3), np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name,features", [("mcunet_5fps", 160), ("mobilenetv2_w035", 112)])
def test_include_top_false_gives_pooled_features(name, features, weights):
    model = from_tiny_training(name, include_top=False)
    assert model.output_shape == (None, features)
    assert model.layers[-1].name == "global_pool"
    assert "classifier" not in {layer.name for layer in model.layers}


def test_other_input_resolutions(models, weights):
    model = mobilenetv2_w035(input_shape=(96, 160, 3))
    assert model.output_shape == (None, 1000)
    out = model.predict(np.zeros((1, 96, 160, 3), np.float32), verbose=0)
    assert out.shape == (1, 1000)
    base = models["mobilenetv2_w035"]
    assert model.get_layer("block3_project").get_weights()[0].shape == \
        base.get_layer("block3_project").get_weights()[0].shape


def test_dynamic_resolution_and_serialization(tmp_path, weights):
    model = from_tiny_training("mcunet_5fps", include_top=False, input_shape=(None, None, 3))
    for size in (64, 100):
        assert model.predict(np.zeros((1, size, size, 3), np.float32), verbose=0).shape == (1, 160)
    path = tmp_path / "backbone.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    x = preprocess_input(np.random.default_rng(1).integers(0, 256, (2, 72, 72, 3)))
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_invalid_arguments(weights):
    with pytest.raises(ValueError, match="classes"):
        from_tiny_training("mcunet_5fps", classes=0)
    with pytest.raises(ValueError, match="channels"):
        from_tiny_training("mcunet_5fps", input_shape=(128, 128, 1))
    with pytest.raises(ValueError, match="clip"):
        from_tiny_training("mcunet_5fps", clip="relu5")
    with pytest.raises(FileNotFoundError, match="mcunet_5fps"):
        from_tiny_training("no_such_model")


def test_preprocess_input_numpy_and_tensor():
    images = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
    out = preprocess_input(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)
    tensor = preprocess_input(tf.constant(images))
    assert tensor.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(tensor), out)


# ---------------------------------------------------------------------------------------
# Generic over the family: a checkpoint with a feature-mix layer (as ProxylessNAS has)
# ---------------------------------------------------------------------------------------


def test_feature_mix_and_other_structures_are_read_from_the_file(tmp_path, checkpoints):
    rng = np.random.default_rng(0)
    data = dict(checkpoints["mobilenetv2_w035"])
    last = data["blocks"][-1]["pointwise2"]["params"]

    def conv(cin, cout, k, stride, groups, x_scale, x_zero, y_zero):
        return {
            "in_channel": cin, "out_channel": cout, "kernel_size": (k, k), "stride": stride,
            "groups": groups, "depthwise": groups > 1, "act": None,
            "params": {
                "weight": rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8),
                "bias": rng.integers(-1000, 1000, cout).astype(np.int32),
                "w_scales": np.full(cout, 0.01, np.float32),
                "x_scale": x_scale, "x_zero": x_zero, "y_scale": 0.02, "y_zero": y_zero,
            },
        }

    data["feature_mix"] = conv(112, 64, 1, 1, 1, last["y_scale"], last["y_zero"], -128)
    data["classifier"] = {**conv(64, 7, 1, 1, 1, 0.02, -128, 0)}
    path = write_checkpoint(tmp_path / "proxyless-like.pkl", data)
    model = from_tiny_training(str(path))
    assert model.name == "proxyless_like"
    assert model.output_shape == (None, 7)
    assert model.get_layer("feature_mix").count_params() == 112 * 64 + 64
    assert model.get_layer("feature_mix_relu").max_value == pytest.approx(255 * 0.02)
    assert tuple(model.get_layer("classifier").kernel.shape) == (64, 7)
    x = preprocess_input(rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8))
    _, records = int8_reference(data, x)
    feature_mix = next(r for r in records if r[0] == "feature_mix")
    got = apply_keras_op(model, "feature_mix", "conv", feature_mix[2])
    assert np.abs(np.clip(got, *feature_mix[4]) - feature_mix[3]).max() <= 0.51 * 0.02


def _previous_builder_form(model):
    """The network as the builder made it before issue 13: every padded conv behind an
    explicit ZeroPadding2D (padding="valid") and Keras' own ReLU(max_value=...)."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, BoundedReLU):
            return keras.layers.ReLU.from_config(config)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) \
                and layer.padding == "same":
            kh, kw = layer.kernel_size
            conv = type(layer).from_config({**config, "padding": "valid"})
            return keras.Sequential([keras.layers.ZeroPadding2D((kh // 2, kw // 2)), conv],
                                    name=f"{layer.name}_padded")
        return type(layer).from_config(config)

    previous = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            names = {l.name for l in previous.layers}
            target = (previous.get_layer(layer.name) if layer.name in names
                      else previous.get_layer(f"{layer.name}_padded").layers[-1])
            target.set_weights(layer.get_weights())
    return previous


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_numerics_as_the_explicit_padding_and_keras_relu_form(name, weights_dir):
    model = from_tiny_training(str(pathlib.Path(weights_dir) / MODELS[name]), name=name,
                               input_shape=(64, 64, 3), classes=10)
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert relus and all(isinstance(layer, BoundedReLU) for layer in relus)
    assert any(layer.max_value != 6.0 for layer in relus)
    pads = [layer.name for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)]
    # Only stride-2 layers keep explicit padding.
    assert pads and all(model.get_layer(p.removesuffix("_pad")).strides == (2, 2) for p in pads)
    previous = _previous_builder_form(model)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32"))
    y = tf.constant([1, 3, 5, 7])

    def kernel_gradients(net):
        kernels = [layer.kernel for layer in net._flatten_layers() if hasattr(layer, "kernel")]
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            loss = keras.losses.sparse_categorical_crossentropy(y, logits)
        return logits.numpy(), [g.numpy() for g in tape.gradient(loss, kernels)]

    outputs, gradients = kernel_gradients(model)
    previous_outputs, previous_gradients = kernel_gradients(previous)
    np.testing.assert_allclose(outputs, previous_outputs, atol=1e-5)
    assert len(gradients) == len(previous_gradients)
    for new, old in zip(gradients, previous_gradients):
        np.testing.assert_allclose(new, old, atol=1e-5 * max(1.0, np.abs(old).max()))
