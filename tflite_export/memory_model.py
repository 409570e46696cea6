"""What the on-device `train` signature keeps beyond inference, predicted in bytes.

`train` runs the forward pass like `infer` and, on top of it, keeps until the
backward pass:

- **selected inputs**: for each search-space layer, its input restricted to
  the selected channels (`kernel_gradients="selected"`, plus one placeholder
  channel per layer; with static channel lists, the fixed capacity of each
  layer's list whatever the selection) or its whole input (`"dense"`); an explicit
  `ZeroPadding2D` in front of a conv is folded into the conv, so the unpadded
  input is kept; float32;
- **ReLU masks**: one byte per element of every ReLU and LeakyReLU output
  between the earliest search-space layer and the logits (the backprop
  region): the step kinds whose `saves_part` is `"relu_mask_bytes"`;
- **other saved activations**: what the other non-linear steps of the
  backprop region keep (`TrainingGraph.saved_for_backward`): a hard-sigmoid's
  mask (one byte per element), the input or output of the other activations,
  the other operand of a multiply, a max pooling's input and output (float32);
- **classifier input**: float32, the head's input;
- **backward working set**: the largest set of gradient tensors alive at one
  backward step (output gradient, input gradient, pending residual
  gradients, and what the step's kind adds, `StepKind.working_elements`:
  the zero-inserted, padded output gradient the kernel gradient of a conv
  reads its taps from), float32;
- **weight update**: three float32 copies of the trained kernels and the head
  (the value read, the scattered gradient, the updated value);
- **optimizer state**: with momentum, one float32 buffer per trained weight
  (kept between steps) and, during the step, its value read and its new
  value: three float32 copies of the trained kernels and the head.

The forward working set is the same as `infer`'s at the same batch and is not
counted: the prediction is of `train` − `infer`. It is an analytic model, not
the LiteRT arena: the arena planner, the op temporaries and the XNNPACK
delegate's own buffers come on top (measured next to it in
`tflite_export/README.md`).

This module needs numpy only (it runs in the app-side `OnDeviceTrainer`):
`build` reads the step kinds through the steps of the trainer it is given.

Example:

>>> from tflite_export import memory_model
>>> model = {"batch_size": 2, "kernel_gradients": "selected",
...          "kept_bytes_per_channel": [64, 16], "num_channels": [3, 4],
...          "relu_mask_bytes": 100, "classifier_input_bytes": 40,
...          "backward_working_bytes": 500, "weight_update_bytes": 300}
>>> memory_model.predict(model, [1, 0, 0, 1, 1, 0, 0])["selected_inputs_bytes"]
176
"""

import numpy as np

#: The parts of the prediction, in the order they are reported.
PARTS = ("selected_inputs_bytes", "relu_mask_bytes", "saved_activations_bytes",
         "classifier_input_bytes", "backward_working_bytes", "weight_update_bytes",
         "optimizer_state_bytes")


def predict(model, mask):
    """Bytes `train` keeps beyond `infer` for one selection.

    Args:
        model: the `"memory_model"` dict of an export's metadata.
        mask: 0/1 array over the channel pool (the current selection).

    Returns:
        dict with every entry of `PARTS` and `"total_bytes"`.
    """
    counts = np.asarray(model["num_channels"], np.int64)
    mask = np.asarray(mask) > 0.5
    if mask.shape != (int(counts.sum()),):
        raise ValueError(f"`mask` must have shape ({int(counts.sum())},) (the channel pool), "
                         f"got {mask.shape}.")
    return _parts(model, mask)


def budget_bound(model, costs, budget_units):
    """The largest `predict(...)["total_bytes"]` over selections within the budget.

    The kept inputs are bounded by a fractional knapsack: channels taken in
    decreasing order of kept bytes per budget unit until the budget is
    spent (an upper bound of the exact 0/1 maximum).

    Args:
        model: the `"memory_model"` dict.
        costs: int array over the pool, units per channel.
        budget_units: int.

    Returns:
        dict as `predict`.
    """
    per_channel = _per_channel(model)
    costs = np.maximum(np.asarray(costs, np.float64), 1.0)
    fraction = np.zeros(per_channel.size)
    left = float(budget_units)
    for index in np.argsort(-(per_channel / costs), kind="stable"):
        if left <= 0:
            break
        fraction[index] = min(1.0, left / costs[index])
        left -= fraction[index] * costs[index]
    return _parts(model, fraction)


def _per_channel(model):
    """Kept bytes of every channel of the pool (float64)."""
    return np.repeat(np.asarray(model["kept_bytes_per_channel"], np.float64),
                     np.asarray(model["num_channels"], np.int64))


def _parts(model, selected):
    """The prediction for a 0/1 (or fractional) selection over the pool."""
    if model["kernel_gradients"] == "selected" and model.get("capacities"):
        kept = int(np.sum(np.asarray(model["kept_bytes_per_channel"], np.int64)
                          * np.asarray(model["capacities"], np.int64)))
    elif model["kernel_gradients"] == "selected":
        placeholder = int(np.sum(np.asarray(model["kept_bytes_per_channel"], np.int64)))
        kept = int(np.ceil(np.sum(_per_channel(model) * selected))) + placeholder
    else:
        kept = int(np.sum(_per_channel(model)))
    result = {"selected_inputs_bytes": kept}
    for part in PARTS[1:]:
        result[part] = int(model.get(part, 0))  # files of the MCUNet-only exporter lack some
    result["total_bytes"] = int(sum(result[p] for p in PARTS))
    return result


def build(trainer, pool, batch_size, kernel_gradients, weight_elements, momentum_elements=0,
          capacities=None):
    """The `"memory_model"` metadata dict of an export.

    Args:
        trainer: the `training_graph.TrainingGraph` of the export.
        pool: the plan's `ChannelPool`.
        batch_size: int, the static batch of `train`.
        kernel_gradients: `"selected"` or `"dense"`.
        weight_elements: int, elements of the trained kernels and head.
        momentum_elements: int, elements of the optimizer's momentum buffers
            (0 without momentum).
        capacities: list of int per pool layer when `train`'s channel lists
            have a fixed length (the kept inputs are then that many channels
            whatever the selection), or None.
    """
    graph = trainer.graph
    batch = int(batch_size)
    kept = []
    for name in pool.layer_names:
        source, _ = trainer.kept_input(trainer.parametric_step(name))
        kept.append(4 * batch * int(np.prod(graph.shapes[source][1:-1])))
    needs = trainer.requires_grad
    saved = dict.fromkeys(("relu_mask_bytes", "saved_activations_bytes"), 0)
    for step in graph.steps:
        if step.output in needs:
            saved[step.spec.saves_part] += batch * _saved_bytes_per_sample(trainer, step)
    head = trainer.parametric_step(trainer.classifier)
    return {
        "batch_size": batch,
        "kernel_gradients": kernel_gradients,
        "kept_bytes_per_channel": kept,
        "num_channels": [int(c) for c in pool.num_channels],
        "capacities": None if capacities is None else [int(c) for c in capacities],
        "relu_mask_bytes": int(saved["relu_mask_bytes"]),
        "saved_activations_bytes": int(saved["saved_activations_bytes"]),
        "classifier_input_bytes": 4 * batch * _elements(graph, head.inputs[0]),
        "backward_working_bytes": int(_backward_working_elements(trainer) * 4 * batch),
        "weight_update_bytes": 3 * 4 * int(weight_elements),
        "optimizer_state_bytes": 3 * 4 * int(momentum_elements),
    }


def _saved_bytes_per_sample(trainer, step):
    """Bytes (per sample) of what `TrainingGraph.saved_for_backward` keeps for `step`."""
    kept = set(trainer.saved_for_backward(step).values())  # x * x keeps x once
    return sum(itemsize * _elements(trainer.graph, tensor) for tensor, itemsize in kept)


def _elements(graph, tensor):
    """Elements per sample of a tensor of the graph."""
    return int(np.prod([int(d) for d in graph.shapes[tensor][1:]]))


def _backward_working_elements(trainer):
    """Largest number of gradient elements (per sample) alive at one backward step."""
    graph = trainer.graph
    needs = trainer.requires_grad
    pending = {graph.logits_id: _elements(graph, graph.logits_id)}
    largest = 0
    for step in reversed(graph.steps):
        if step.output not in needs or step.output not in pending:
            continue
        dy = pending.pop(step.output)
        extra = step.spec.working_elements(step, graph.shapes)  # a conv's tap grid
        for tensor in step.inputs:
            if tensor in needs and tensor not in pending:
                pending[tensor] = _elements(graph, tensor)
        largest = max(largest, dy + extra + sum(pending.values()))
    return largest
