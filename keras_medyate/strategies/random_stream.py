"""MeDyate's random stream and draw order: the one definition of host and device.

`MeDyateSelector` (host, numpy) and the `resample` signature of an exported
LiteRT model (`tflite_export.sampler`, builtin TensorFlow ops) compute the
same function, written here once in numpy; `tflite_export.sampler` mirrors
every function below op for op, and the tests compare the two element-wise
(bit for bit, on adversarial inputs and through whole training runs). Same
seed + same state ⇒ same selection.

1. **Random words** (`words`): a counter-based hash of `(seed, epoch,
   channel index)` in `uint32` arithmetic (xor, shift, multiply, add: they
   wrap modulo 2^32 identically in numpy and LiteRT). No generator state: the
   draw of epoch `e` depends only on the seed and `e`.
2. **Exponential variates** (`exponentials`): `E = -ln(u)` with
   `u = (2k + 1) / 2^24` from the top 23 bits `k` of the word, written with
   IEEE-exact float32 operations only (compare, multiply, add, divide; no
   `log`/`exp`, whose last bit differs between libm, numpy's SIMD code and
   LiteRT): `u = g·2^-j` with `g` in [0.5, 1), `E = j·ln 2 + 2·atanh(s)`,
   `s = (1 - g)/(1 + g)` by an 8-term odd series (|error| < 1e-9, always > 0).
3. **Weights** (`sampling_weights`): `w = max(m / max(m), epsilon)` over the
   stored norms `m` clipped at 0 (all 1 if the maximum is 0 or the draw is
   uniform). `epsilon = 0` gives zero weights. Subnormal norms and ratios are
   set to 0 on both sides (LiteRT may flush them, numpy does not), so keys
   are normal floats or +inf.
4. **Order** (`draw_order`): keys `E / w` (an infinite key for `w = 0`) in
   increasing order, ties broken by the lower channel index: sequential
   sampling without replacement with `P ∝ w` (the exponential-race form of
   the Efraimidis–Spirakis keys). The device sorts `-E / w` with `TOPK_V2`,
   which breaks ties by the lower index too.
5. The budget fill is `base.fill_budget` ("stop" on the device: a `CUMSUM`).

Every value is float32 (or uint32/int32) on both sides, in the same operation
order. This module imports numpy only.

Example:

>>> from keras_medyate.strategies import random_stream
>>> e = random_stream.exponentials(random_stream.words(seed=0, epoch=0, size=4))
>>> bool((e > 0).all()), e.dtype.name
(True, 'float32')
"""

import numpy as np

#: Multipliers of the 32-bit avalanche mix (xor-shift / multiply rounds).
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
#: Odd constants that separate the seed, the resample count and the counter.
SEED_SALT = 0x9E3779B9
EPOCH_SALT = 0x85EBCA6B
COUNTER_SALT = 0xC2B2AE35
#: Bits of a word used for one variate: `u = (2k + 1) / 2^(BITS + 1)`, exact in float32.
UNIFORM_BITS = 23
#: `2^-b` for the bit length `b` of `2k + 1` (1..24), exact in float32.
INVERSE_POWERS = np.float32(2.0) ** -np.arange(UNIFORM_BITS + 2, dtype=np.float32)
#: Thresholds `2^i`: the bit length of `n` is the number of them `<= n`.
POWERS = (np.int32(1) << np.arange(UNIFORM_BITS + 1, dtype=np.int32)).astype(np.int32)
LN2 = np.float32(np.log(2.0))
#: atanh(s)/s = Σ s^(2i) / (2i + 1), i = 0..7, highest first (Horner).
SERIES = tuple(np.float32(1.0 / (2 * i + 1)) for i in reversed(range(8)))
FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
#: The smallest normal float32. LiteRT flushes subnormals to zero on some
#: paths (XNNPACK, FTZ/DAZ CPUs) and numpy does not, so subnormal norms and
#: weights are set to 0 explicitly on both sides.
FLOAT32_TINY = np.float32(np.finfo(np.float32).tiny)


def mix(x):
    """The 32-bit avalanche mix (two xor-shift-multiply rounds)."""
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(MIX_MULTIPLIERS[0])
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(MIX_MULTIPLIERS[1])
        return x ^ (x >> np.uint32(16))


def words(seed, epoch, size):
    """`size` random uint32 words for `(seed, epoch)`.

    Args:
        seed: int, the seed (taken modulo 2^32; the device takes an int32).
        epoch: int, the number of resamples done before this one.
        size: int, the pool size.
    """
    seed_u = np.uint32(int(seed) % 2**32)
    epoch_u = np.uint32(int(epoch) % 2**32)
    with np.errstate(over="ignore"):
        stream = mix(mix(seed_u ^ np.uint32(SEED_SALT)) ^ (epoch_u * np.uint32(EPOCH_SALT)))
        counter = np.arange(size, dtype=np.uint32)
        return mix(mix(counter * np.uint32(COUNTER_SALT) + stream) ^ stream)


def exponentials(bits):
    """Exp(1) variates `-ln u` (float32, > 0) from uint32 words, basic float ops only."""
    bits = np.asarray(bits, np.uint32)
    k = (bits >> np.uint32(32 - UNIFORM_BITS)).astype(np.int32)
    n = k * np.int32(2) + np.int32(1)                       # odd, in [1, 2^24)
    length = (n[:, None] >= POWERS[None, :]).astype(np.int32).sum(axis=1).astype(np.int32)
    g = n.astype(np.float32) * INVERSE_POWERS[length]        # in [0.5, 1), exact
    j = (np.int32(UNIFORM_BITS + 1) - length).astype(np.float32)
    s = (np.float32(1.0) - g) / (np.float32(1.0) + g)
    s2 = s * s
    p = np.full_like(s, SERIES[0])
    for c in SERIES[1:]:
        p = p * s2 + c
    t = s * p
    return (j * LN2 + (t + t)).astype(np.float32)


def flush_subnormals(x):
    """`x` with every |value| below the smallest normal float32 set to 0."""
    x = np.asarray(x, np.float32)
    return np.where(np.abs(x) < FLOAT32_TINY, np.float32(0.0), x).astype(np.float32)


def clean_norms(norms):
    """Observed norms as stored: float32, NaN → 0, +inf → the largest float32,
    subnormals → 0."""
    norms = np.asarray(norms, np.float32)
    return flush_subnormals(np.where(norms != norms, np.float32(0.0),
                                     np.minimum(norms, FLOAT32_MAX)))


def max_fill_value(memory, measured):
    """The norm given once to never-measured channels: the largest measured one (≥ 0)."""
    memory = np.asarray(memory, np.float32)
    return np.float32(np.max(np.where(measured, memory, np.float32(0.0)), initial=0.0))


def sampling_weights(memory, epsilon, uniform=False):
    """`max(m / max(m), epsilon)` with `m = max(memory, 0)` (float32); all 1 if
    `uniform` or the maximum is 0."""
    values = flush_subnormals(np.maximum(np.asarray(memory, np.float32), np.float32(0.0)))
    top = np.max(values, initial=np.float32(0.0))
    if uniform or not top > 0:
        return np.ones_like(values)
    return np.maximum(flush_subnormals(values / top), np.float32(epsilon)).astype(np.float32)


def draw_order(variates, weights):
    """Channels by increasing `variates / weights`, ties by lower index (int64).

    A zero weight gives an infinite key: such channels come last, by index.
    """
    variates = np.asarray(variates, np.float32)
    weights = np.asarray(weights, np.float32)
    with np.errstate(divide="ignore"):
        keys = variates / weights
    return np.argsort(keys, kind="stable").astype(np.int64)


def medyate_order(seed, epoch, memory, epsilon, uniform=False):
    """The order MeDyate fills the budget in, for one epoch."""
    memory = np.asarray(memory, np.float32)
    variates = exponentials(words(seed, epoch, memory.shape[0]))
    return draw_order(variates, sampling_weights(memory, epsilon, uniform))
