"""The MeDyate channel sampler written in LiteRT builtin ops (runs on the device).

It mirrors `keras_medyate.strategies.medyate.MeDyateSelector` together with
the bookkeeping the host's `keras_medyate.selection.SelectionState.resample`
does around it (`resample` below is its counterpart, one pure function over
the state tensors), over the flat channel pool of the plan:

1. *observe*: if at least one resample happened and at least one training step
   ran since, the channels selected last epoch store their mean per-step
   gradient norm (`norm_sum / norm_steps`; NaN → 0) and become *measured*;
2. the first resample (or any resample while nothing is measured yet) draws
   channels uniformly;
3. the first resample that has measured channels sets every never-measured
   channel to the maximum stored norm, once ("max-fill");
4. otherwise channels are drawn without replacement with probability
   proportional to `max(m / max(m), epsilon)` (all ones if the maximum is 0),
   in the order of the keys `E / w` (exponential race), sorted with `TOPK_V2`
   (ties: lower channel index first);
5. budget fill "stop": the longest prefix of that order whose cumulative cost
   (`CUMSUM`) fits the budget.

**One definition.** Steps 2–4 (random words, exponential variates, weights,
order) are `keras_medyate.strategies.random_stream`, the numpy module
`MeDyateSelector` uses on the host; every function here mirrors the one of
the same name there op for op (uint32 hash ops that wrap modulo 2^32; float32
compare/multiply/add/divide only, no `log`, in the same order), so the device
selects bit for bit the channels the host selects from the same seed and
state (tests: `test_tflite_export_sampler.py`).

Random numbers: LiteRT's builtin `RANDOM_UNIFORM` takes its seed from the
model file (fixed at conversion) and the `Stateless*` random ops need Flex, so
the stream is a counter-based integer hash of `(seed, resample count, i)`
written with builtin `uint32` ops (`MUL`, `BITWISE_XOR`, `RIGHT_SHIFT`,
`ADD`, `CAST`).

Example:

>>> import numpy as np
>>> import tensorflow as tf
>>> from tflite_export import sampler
>>> from keras_medyate.strategies import random_stream
>>> seed, epoch = tf.constant([3], tf.int32), tf.constant([1], tf.int32)
>>> e = sampler.exponentials(sampler.words(seed, epoch, 6)).numpy()
>>> bool((e == random_stream.exponentials(random_stream.words(3, 1, 6))).all())
True
"""

import numpy as np
import tensorflow as tf

from keras_medyate.strategies import random_stream as stream

#: The budget fill the device runs (one of `keras_medyate.strategies.base.FILL_MODES`).
FILL_MODE = "stop"
#: The norm statistic the device accumulates (`SubnetworkModel.channel_norms`).
NORM_STATISTIC = "mean"
FLOAT32_MAX = float(stream.FLOAT32_MAX)


# --- the random stream and the order: mirrors of `random_stream` ---------------------


def _u32(value):
    return tf.constant(value, tf.uint32)


def mix(x):
    """`random_stream.mix`."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))
    x = x * _u32(stream.MIX_MULTIPLIERS[0])
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(15)))
    x = x * _u32(stream.MIX_MULTIPLIERS[1])
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))


def words(seed, epoch, size):
    """`random_stream.words` from int32 tensors `seed` and `epoch` (shape (1,))."""
    seed_u = tf.cast(seed, tf.uint32)
    epoch_u = tf.cast(epoch, tf.uint32)
    key = mix(tf.bitwise.bitwise_xor(mix(tf.bitwise.bitwise_xor(seed_u, _u32(stream.SEED_SALT))),
                                     epoch_u * _u32(stream.EPOCH_SALT)))
    counter = tf.cast(tf.range(size, dtype=tf.int32), tf.uint32)
    return mix(tf.bitwise.bitwise_xor(mix(counter * _u32(stream.COUNTER_SALT) + key), key))


def exponentials(bits):
    """`random_stream.exponentials`: float32 Exp(1) variates from uint32 words."""
    k = tf.cast(tf.bitwise.right_shift(bits, _u32(32 - stream.UNIFORM_BITS)), tf.int32)
    n = k * 2 + 1
    length = tf.reduce_sum(tf.cast(tf.greater_equal(
        tf.expand_dims(n, 1), tf.constant(stream.POWERS[None, :], tf.int32)), tf.int32), axis=1)
    g = tf.cast(n, tf.float32) * tf.gather(tf.constant(stream.INVERSE_POWERS, tf.float32), length)
    j = tf.cast(stream.UNIFORM_BITS + 1 - length, tf.float32)
    s = (1.0 - g) / (1.0 + g)
    s2 = s * s
    p = tf.fill(tf.shape(s), tf.constant(stream.SERIES[0], tf.float32))
    for c in stream.SERIES[1:]:
        p = p * s2 + tf.constant(c, tf.float32)
    t = s * p
    return j * tf.constant(stream.LN2, tf.float32) + (t + t)


def flush_subnormals(x):
    """`random_stream.flush_subnormals`."""
    return tf.where(tf.less(tf.abs(x), float(stream.FLOAT32_TINY)), tf.zeros_like(x), x)


def clean_norms(norms):
    """`random_stream.clean_norms`."""
    return flush_subnormals(tf.where(tf.not_equal(norms, norms), tf.zeros_like(norms),
                                     tf.minimum(norms, FLOAT32_MAX)))


def max_fill_value(memory, is_measured):
    """`random_stream.max_fill_value` (shape (1,))."""
    return tf.maximum(tf.reduce_max(tf.where(is_measured, memory, tf.zeros_like(memory)),
                                    keepdims=True), 0.0)


def sampling_weights(memory, epsilon, uniform):
    """`random_stream.sampling_weights`; `uniform` is a bool tensor of shape (1,)."""
    values = flush_subnormals(tf.maximum(memory, 0.0))
    top = tf.reduce_max(values, keepdims=True)
    flat = tf.logical_or(uniform, tf.logical_not(tf.greater(top, 0.0)))
    safe_top = tf.where(flat, tf.ones_like(top), top)
    weighted = tf.maximum(flush_subnormals(values / safe_top), tf.constant(np.float32(epsilon), tf.float32))
    return tf.where(flat, tf.ones_like(values), weighted)


def draw_order(variates, weights):
    """`random_stream.draw_order`: `TOPK_V2` of `-E / w` (ties: lower index first)."""
    keys = -(variates / weights)
    return tf.math.top_k(keys, k=int(keys.shape[0]), sorted=True).indices


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
        (new_state dict, selected float32 (P,) 0/1, cost int32 (1,)). The host
        applies the same update to a `SubnetworkModel`'s variables with
        `selection_state.resample` (its state names: `mask` ↔ the masks,
        `memory`/`measured`/`max_filled` ↔ MeDyate's `channel_memory`/
        `channel_measured`/`memory_max_filled`, `seen` ↔ `channel_seen`,
        `norm_sum`/`norm_steps` ↔ `norm_sums`/`norm_steps`, `epoch` ↔
        `epochs_selected`).
    """
    size = int(costs.shape[0])
    epoch = state["epoch"]
    steps = state["norm_steps"]
    previous = tf.greater(state["mask"], 0.0)
    observe = tf.logical_and(previous, tf.logical_and(tf.greater(steps, 0.0), tf.greater(epoch, 0)))
    norms = clean_norms(state["norm_sum"] / tf.maximum(steps, 1.0))
    memory = tf.where(observe, norms, state["memory"])
    measured = tf.where(observe, tf.ones_like(memory), state["measured"])
    is_measured = tf.greater(measured, 0.0)
    any_measured = tf.greater(tf.reduce_max(measured, keepdims=True), 0.0)
    uniform = tf.logical_or(tf.equal(epoch, 0), tf.logical_not(any_measured))
    fill_now = tf.logical_and(tf.logical_not(uniform), tf.less_equal(state["max_filled"], 0.0))
    top_measured = max_fill_value(memory, is_measured)
    memory = tf.where(tf.logical_and(fill_now, tf.logical_not(is_measured)), top_measured, memory)
    max_filled = tf.where(fill_now, tf.ones_like(state["max_filled"]), state["max_filled"])

    weights = sampling_weights(memory, epsilon, uniform)
    order = draw_order(exponentials(words(seed, epoch, size)), weights)
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
