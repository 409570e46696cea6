"""Inspection of `.tflite` flatbuffers: file identifier and operator codes.

Uses the LiteRT schema bindings shipped with `ai_edge_litert`
(`schema_py_generated`), so it needs neither TensorFlow nor a running
interpreter. `operators` lists the builtin operators of every subgraph;
a `CUSTOM` operator is reported as `"CUSTOM:<code>"` (Flex operators are
custom operators whose code starts with `"Flex"`).

Example:

>>> from tflite_export import flatbuffer
>>> flatbuffer.is_tflite(b"\\x1c\\x00\\x00\\x00TFL3")
True
"""

from ai_edge_litert import schema_py_generated as schema

IDENTIFIER = b"TFL3"


class CorruptModelError(ValueError):
    """The bytes are not a readable LiteRT (`.tflite`) model."""


class NonBuiltinOpsError(ValueError):
    """The model needs Flex (Select TF ops) or custom operators."""


def is_tflite(data):
    """True if `data` starts like a LiteRT flatbuffer (identifier `TFL3`)."""
    return len(data) >= 8 and bytes(data[4:8]) == IDENTIFIER


def _operator_names():
    return {value: name for name, value in vars(schema.BuiltinOperator).items()
            if not name.startswith("_") and isinstance(value, int)}


def operators(data, source="the model"):
    """Sorted names of the operators used by any subgraph of a `.tflite` model.

    Args:
        data: bytes of the model.
        source: str, how to name the model in errors.

    Returns:
        sorted list of str (`"CONV_2D"`, …, `"CUSTOM:FlexConv2DBackpropFilter"`).

    Raises:
        CorruptModelError: `data` is not a LiteRT flatbuffer.
    """
    if not is_tflite(data):
        raise CorruptModelError(
            f"{source} is not a LiteRT/TFLite model (no 'TFL3' file identifier; "
            f"{len(data)} bytes). Re-export it with `export_training_model`."
        )
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        names = _operator_names()
        codes = []
        for index in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(index)
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                custom = code.CustomCode()
                name = f"CUSTOM:{custom.decode('utf-8', 'replace') if custom else '?'}"
            codes.append(name)
        used = set()
        for s in range(model.SubgraphsLength()):
            subgraph = model.Subgraphs(s)
            for o in range(subgraph.OperatorsLength()):
                used.add(codes[subgraph.Operators(o).OpcodeIndex()])
    except CorruptModelError:
        raise
    except Exception as error:  # any parse failure means corruption
        raise CorruptModelError(
            f"{source} is a damaged LiteRT model: its flatbuffer cannot be parsed "
            f"({type(error).__name__}: {error}). Re-export or re-download it."
        ) from error
    return sorted(used)


def min_runtime_version(data):
    """The `min_runtime_version` the converter wrote into the model, or None."""
    if not is_tflite(data):
        return None
    model = schema.Model.GetRootAsModel(data, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name() == b"min_runtime_version":
            buffer = model.Buffers(entry.Buffer())
            if buffer.DataLength():
                return bytes(buffer.DataAsNumpy()).split(b"\0")[0].decode("ascii", "replace")
    return None


def non_builtin_operators(data, source="the model"):
    """The custom (including Flex) operators of a model, sorted."""
    return [name for name in operators(data, source) if name.startswith("CUSTOM")]


def check_builtin_only(data, source="the model"):
    """Raises `NonBuiltinOpsError` unless every operator is a LiteRT builtin."""
    offending = non_builtin_operators(data, source)
    if offending:
        flex = [n.split(":", 1)[1] for n in offending if n.startswith("CUSTOM:Flex")]
        raise NonBuiltinOpsError(
            f"{source} uses operators that are not LiteRT builtins: {offending}"
            + (f" (Flex/Select TF ops {flex}, which current LiteRT runtimes do not ship)"
               if flex else "")
            + ". The on-device training graph must be builtin-only."
        )
