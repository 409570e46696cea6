"""The MeDyate channel sampler written in LiteRT builtin ops (runs on the device).

It mirrors `keras_medyate.strategies.medyate.MeDyateSelector` together with
the bookkeeping `ChannelResampler.on_epoch_begin` does around it, over the
flat channel pool of the plan:

1. *observe*: if at least one resample happened and at least one training step
   ran since, the channels selected last epoch store their mean per-step
   gradient norm (`norm_sum / norm_steps`; NaN → 0) and become *measured*;
2. the first resample (or any resample while nothing is measured yet) draws
   channels uniformly;
3. the first resample that has measured channels sets every never-measured
   channel to the maximum stored norm, once ("max-fill");
4. otherwise channels are drawn without replacement with probability
   proportional to `max(memory, epsilon * max(memory))` (all ones if the
   maximum is 0), using Efraimidis–Spirakis keys `log(u) / w` sorted in
   descending order with `TOPK_V2`;
5. budget fill "stop": the longest prefix of that order whose cumulative cost
   (`CUMSUM`) fits the budget.

Random numbers: LiteRT's builtin `RANDOM_UNIFORM` takes its seed from the
model file (fixed at conversion) and the `Stateless*` random ops need Flex, so
the uniforms come from a counter-based integer hash implemented with builtin
`uint32` ops (`MUL`, `BITWISE_XOR`, `RIGHT_SHIFT`, `CAST`), all of which wrap
modulo 2^32 exactly as numpy does. `u_i` is a deterministic function of
`(seed, resample count, i)`; `reference_uniforms` is its numpy twin.

Example:

>>> import numpy as np
>>> from tflite_export import sampler
>>> u = sampler.reference_uniforms(seed=0, epoch=0, size=5)
>>> bool(((u > 0) & (u < 1)).all())
True
"""

import numpy as np
import tensorflow as tf

#: The budget fill the device runs (one of `keras_medyate.strategies.base.FILL_MODES`).
FILL_MODE = "stop"
#: Multipliers of the 32-bit avalanche mix (xor-shift / multiply rounds).
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
#: Odd constants that separate the seed, the resample count and the counter.
SEED_SALT = 0x9E3779B9
EPOCH_SALT = 0x85EBCA6B
COUNTER_SALT = 0xC2B2AE35
#: float32 keeps 24 significant bits: u = (top 24 bits + 0.5) / 2^24 in (0, 1).
UNIFORM_BITS = 24
FLOAT32_MAX = float(np.finfo(np.float32).max)


# --- the random numbers ----------------------------------------------------------


def _mix_tf(x):
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(MIX_MULTIPLIERS[0], tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(MIX_MULTIPLIERS[1], tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _mix_np(x):
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(MIX_MULTIPLIERS[0])
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(MIX_MULTIPLIERS[1])
        return x ^ (x >> np.uint32(16))


def uniforms(seed, epoch, size):
    """`size` uniforms in (0, 1) from int32 tensors `seed` and `epoch` (shape (1,)).

    Builtin ops only; equal bit for bit to `reference_uniforms`.
    """
    seed_u = tf.cast(seed, tf.uint32)
    epoch_u = tf.cast(epoch, tf.uint32)
    stream = _mix_tf(tf.bitwise.bitwise_xor(_mix_tf(tf.bitwise.bitwise_xor(
        seed_u, tf.constant(SEED_SALT, tf.uint32))),
        epoch_u * tf.constant(EPOCH_SALT, tf.uint32)))
    counter = tf.cast(tf.range(size, dtype=tf.int32), tf.uint32)
    bits = _mix_tf(tf.bitwise.bitwise_xor(
        _mix_tf(counter * tf.constant(COUNTER_SALT, tf.uint32) + stream), stream))
    top = tf.bitwise.right_shift(bits, tf.constant(32 - UNIFORM_BITS, tf.uint32))
    return (tf.cast(tf.cast(top, tf.int32), tf.float32) + 0.5) * (0.5 ** UNIFORM_BITS)


def reference_uniforms(seed, epoch, size):
    """The numpy twin of `uniforms` (host side, for tests and tooling).

    Args:
        seed: int, the `seed` passed to the `resample` signature.
        epoch: int, the number of resamples done before this one.
        size: int, the pool size.

    Returns:
        float32 array of `size` values in (0, 1).
    """
    with np.errstate(over="ignore"):
        seed_u = np.asarray(seed, np.int64).astype(np.uint32)
        epoch_u = np.asarray(epoch, np.int64).astype(np.uint32)
        stream = _mix_np(_mix_np(seed_u ^ np.uint32(SEED_SALT)) ^ (epoch_u * np.uint32(EPOCH_SALT)))
        counter = np.arange(size, dtype=np.uint32)
        bits = _mix_np(_mix_np(counter * np.uint32(COUNTER_SALT) + stream) ^ stream)
    top = (bits >> np.uint32(32 - UNIFORM_BITS)).astype(np.int32)
    return ((top.astype(np.float32) + np.float32(0.5)) * np.float32(0.5 ** UNIFORM_BITS)).astype(
        np.float32)


# --- one resample ----------------------------------------------------------------


def resample(state, seed, costs, budget_units, epsilon):
    """One MeDyate resample on tensors (pure: returns the new state).

    Args:
        state: dict of tensors: `mask`, `memory`, `measured`, `seen`,
            `norm_sum` (float32 (P,)), `norm_steps` (float32 (1,)),
            `epoch` (int32 (1,)), `max_filled` (float32 (1,)).
        seed: int32 (1,).
        costs: int32 numpy array (P,), units of every channel.
        budget_units: int, the budget.
        epsilon: float, relative floor of the sampling weights.

    Returns:
        (new_state dict, selected float32 (P,) 0/1, cost int32 (1,)).
    """
    size = int(costs.shape[0])
    epoch = state["epoch"]
    steps = state["norm_steps"]
    previous = tf.greater(state["mask"], 0.0)
    observe = tf.logical_and(previous, tf.logical_and(tf.greater(steps, 0.0), tf.greater(epoch, 0)))
    norms = state["norm_sum"] / tf.maximum(steps, 1.0)
    # np.nan_to_num(nan=0.0): NaN → 0, +inf → the largest float.
    norms = tf.where(tf.not_equal(norms, norms), tf.zeros_like(norms),
                     tf.minimum(norms, FLOAT32_MAX))
    memory = tf.where(observe, norms, state["memory"])
    measured = tf.where(observe, tf.ones_like(memory), state["measured"])
    is_measured = tf.greater(measured, 0.0)
    any_measured = tf.greater(tf.reduce_max(measured, keepdims=True), 0.0)
    uniform = tf.logical_or(tf.equal(epoch, 0), tf.logical_not(any_measured))
    fill_now = tf.logical_and(tf.logical_not(uniform), tf.less_equal(state["max_filled"], 0.0))
    top_measured = tf.reduce_max(tf.where(is_measured, memory, tf.zeros_like(memory)),
                                 keepdims=True)
    memory = tf.where(tf.logical_and(fill_now, tf.logical_not(is_measured)), top_measured, memory)
    max_filled = tf.where(fill_now, tf.ones_like(state["max_filled"]), state["max_filled"])

    values = tf.maximum(memory, 0.0)
    top = tf.reduce_max(values, keepdims=True)
    floor = tf.where(tf.greater(top, 0.0), epsilon * top, tf.ones_like(top))
    weights = tf.where(uniform, tf.ones_like(values), tf.maximum(values, floor))

    keys = tf.math.log(uniforms(seed, epoch, size)) / weights
    order = tf.math.top_k(keys, k=size, sorted=True).indices
    ordered_costs = tf.gather(tf.constant(costs, tf.int32), order)
    take = tf.less_equal(tf.cumsum(ordered_costs), int(budget_units))
    selected = tf.scatter_nd(tf.reshape(order, [size, 1]), tf.cast(take, tf.float32), [size])
    cost = tf.reduce_sum(tf.where(take, ordered_costs, tf.zeros_like(ordered_costs)),
                         keepdims=True)
    new_state = {
        "mask": selected,
        "memory": memory,
        "measured": measured,
        "seen": tf.maximum(state["seen"], selected),
        "norm_sum": tf.zeros_like(state["norm_sum"]),
        "norm_steps": tf.zeros_like(steps),
        "epoch": epoch + 1,
        "max_filled": max_filled,
    }
    return new_state, selected, cost
