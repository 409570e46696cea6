"""One walk over a Keras functional graph: every layer call, in topological order.

Nested functional and Sequential models are flattened: their layers are named
`"outer/inner"` (the names `kmd.plan` uses), and the tensors at a nested
model's boundary are replaced by the outer ones, so that every call reads and
writes the tensors the flattened graph really has. Tensors are named by keys
unique in the flattened graph (a nested model called twice writes different
tensors each time). The order is Keras' own (`model.layers`: by depth from
the input, ties in the order Keras traced the graph); a layer called several
times appears once per call, each call at its own depth.

`inventory` reads the updatable layers from this walk and
`tflite_export.graph` the steps of the on-device training graph: both name
the same layer the same way.

Example:

>>> import keras
>>> from keras_medyate import walk
>>> inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")],
...                          name="backbone")
>>> inputs = keras.Input((8, 8, 3))
>>> outputs = keras.layers.Dense(2, name="head")(
...     keras.layers.GlobalAveragePooling2D(name="pool")(inner(inputs)))
>>> [call.name for call in walk.walk(keras.Model(inputs, outputs)).calls]
['backbone', 'backbone/conv', 'pool', 'head']
"""

import dataclasses

import keras


class UnreadableModelError(ValueError):
    """A (nested) model whose layer graph cannot be read: subclassed or unbuilt."""


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer in the flattened graph.

    Attributes:
        name: str, the layer name, prefixed `"outer/"` inside nested models.
        layer: the Keras layer (or operation), or the nested `keras.Model`
            when `nested` is True (its own calls follow it).
        inputs: tuple of the keys of the tensors the call reads (outer
            tensors at a nested model's boundary); `Walk.shapes` has their shapes.
        outputs: tuple of the keys of the tensors it writes.
        trainable: bool, the layer and every model nested around it are
            trainable (the walked model's own flag is not read).
        nested: bool, the call of a nested model.
        arguments: tuple, the call's positional arguments with every tensor
            replaced by its key (lists and tuples of them alike); constants
            as given, e.g. `(key, 3.0)` for the `x + 3.0` of a functional
            graph (a `keras.ops` operation, not a layer).
    """

    name: str
    layer: object
    inputs: tuple
    outputs: tuple
    trainable: bool
    nested: bool = False
    arguments: tuple = ()


@dataclasses.dataclass(frozen=True)
class Walk:
    """The flattened graph of a model.

    Attributes:
        calls: tuple of `LayerCall` in topological order (input layers left out).
        inputs: tuple, the keys of the model's inputs.
        outputs: tuple, the keys of the model's outputs.
        shapes: dict tensor key → static shape tuple (batch dimension None).
    """

    calls: tuple
    inputs: tuple
    outputs: tuple
    shapes: dict


def is_graph_model(model):
    """True for a functional or Sequential `keras.Model` (not a subclassed one)."""
    from keras.src.models.functional import Functional  # noqa: PLC0415

    return isinstance(model, (Functional, keras.Sequential))


def walk(model):
    """Every layer call of a built functional or Sequential model, flattened.

    Raises:
        UnreadableModelError: `model`, or a model nested in it, is subclassed
            or not built.
    """
    graph = _graph_of(model, repr(model.name))
    state = _State()
    inputs = tuple(state.key(t, scope=0) for t in graph.inputs)
    outputs = _walk(graph, "", True, 0, dict(zip(map(id, graph.inputs), inputs)), state)
    return Walk(calls=tuple(state.calls), inputs=inputs, outputs=outputs, shapes=state.shapes)


class _State:
    def __init__(self):
        self.calls = []
        self.shapes = {}
        self.scopes = 0

    def key(self, tensor, scope):
        key = (scope, id(tensor))
        self.shapes[key] = tuple(tensor.shape)
        return key


def _graph_of(model, name):
    if not is_graph_model(model):
        raise UnreadableModelError(
            f"Nested model {name} ({type(model).__name__}) is subclassed; only functional "
            "and Sequential sub-models can be read. Build it with "
            "`keras.Model(inputs, outputs)` or `keras.Sequential([keras.Input(...), ...])`."
        )
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if graph is None:
        raise UnreadableModelError(
            f"Model {name} is not built; start it with `keras.Input(shape)`.")
    return graph


def _with_keys(argument, keys):
    """A call argument with its tensors replaced by their keys."""
    if isinstance(argument, (list, tuple)):
        return tuple(_with_keys(a, keys) for a in argument)
    if isinstance(argument, keras.KerasTensor):
        return keys[id(argument)]
    return argument


def _walk(graph, prefix, trainable, scope, keys, state):
    """Appends the calls of `graph` (one scope: one call of a model); `keys`
    maps id(KerasTensor) → key, the graph's inputs already mapped. Returns the
    keys of its outputs."""
    rank = {id(operation): i for i, operation in enumerate(graph.operations)}
    nodes = [(depth, node) for depth, level in graph._nodes_by_depth.items() for node in level]
    # Deepest first (inputs), then Keras' layer order; a shared layer's calls
    # in call order. For layers called once this is exactly `model.layers`.
    nodes.sort(key=lambda item: (-item[0], rank[id(item[1].operation)],
                                 item[1].operation._inbound_nodes.index(item[1])))
    for _, node in nodes:
        operation = node.operation
        if operation is None or node.is_input:
            continue
        name = f"{prefix}{operation.name}"
        inputs = tuple(keys[id(t)] for t in node.input_tensors)
        within = trainable and getattr(operation, "trainable", True)
        if not isinstance(operation, keras.Model):
            outputs = tuple(state.key(t, scope) for t in node.output_tensors)
            arguments = tuple(_with_keys(a, keys) for a in node.arguments.args)
            state.calls.append(LayerCall(name, operation, inputs, outputs, within,
                                         arguments=arguments))
        else:
            inner = _graph_of(operation, repr(name))
            state.scopes += 1
            position = len(state.calls)
            outputs = _walk(inner, f"{name}/", within, state.scopes,
                            dict(zip(map(id, inner.inputs), inputs)), state)
            state.calls.insert(position, LayerCall(name, operation, inputs, outputs, within,
                                                   nested=True))
        keys.update(zip(map(id, node.output_tensors), outputs))
    return tuple(keys[id(t)] for t in graph.outputs)
