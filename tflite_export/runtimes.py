"""One small layer over LiteRT's two Python APIs: the Interpreter and CompiledModel.

`open_model(path, runtime=...)` returns an object with the same three
methods whichever LiteRT API runs the file, so `OnDeviceTrainer` (and the
runtime matrix of `benchmarks/runtime_matrix.py`) drive either:

- `"interpreter"`: `ai_edge_litert.interpreter.Interpreter` and its signature
  runners (what Android's `org.tensorflow.lite.Interpreter.runSignature`
  does). Falls back to `tflite_runtime.interpreter` when `ai_edge_litert` is
  not installed (old releases: `tflite-runtime` 2.14).
- `"compiled_model"`: `ai_edge_litert.compiled_model.CompiledModel` (LiteRT
  2.x's recommended API, the one of Android's new Kotlin `CompiledModel`):
  one set of `TensorBuffer`s per signature and input shapes, created once and
  reused; an input whose model shape has a -1 (`infer`'s dynamic batch,
  `train`'s channel lists of a `kernel_gradients="selected"` export) is
  resized with `resize_input_tensor_by_name` when the given array's shape
  differs from the compiled one.

This module imports only numpy and the LiteRT package (no TensorFlow, no
keras-medyate), so it runs in a lean process and in old-runtime venvs.

>>> from tflite_export import runtimes
>>> runtimes.RUNTIMES
('interpreter', 'compiled_model')
>>> runtimes.TensorSpec((-1, 96, 96, 3), np.dtype("float32")).accepts((4, 96, 96, 3))
True

Example:

```python
from tflite_export.runtimes import open_model

model = open_model("medyate.tflite", runtime="compiled_model", num_threads=2)
print(model.signature_names())
print(model.input_specs("train"))    # {"x": TensorSpec(shape=(8, 96, 96, 3), dtype=float32), ...}
outputs = model.run("resample", seed=np.array([0], np.int32))   # {"mask": ndarray, ...}
```
"""

import dataclasses
import importlib
import os

import numpy as np

RUNTIMES = ("interpreter", "compiled_model")

_INSTALL_HINT = "pip install -U ai-edge-litert"


class InvalidOptionError(ValueError):
    """An argument of `open_model` is invalid (not a problem of the file)."""


class UnknownRuntimeError(InvalidOptionError):
    """`runtime` is not one of `RUNTIMES`."""


class RuntimeNotAvailableError(ImportError):
    """The requested LiteRT API is not in the installed LiteRT package."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An input of a signature as the model declares it.

    Attributes:
        shape: tuple of int, -1 for a dynamic dimension.
        dtype: numpy dtype.
    """

    shape: tuple
    dtype: np.dtype

    @property
    def is_dynamic(self):
        """True if some dimension is -1 (the runtime resizes it per call)."""
        return any(d < 0 for d in self.shape)

    def accepts(self, shape):
        """True if an array of `shape` fits (same rank, equal static dimensions)."""
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape))


def runtime_version(runtime="interpreter"):
    """`"<package> <version>"` of the LiteRT package `runtime` would use, or None."""
    for package, module in (("ai-edge-litert", "ai_edge_litert"),
                            ("tflite-runtime", "tflite_runtime")):
        if runtime == "compiled_model" and package != "ai-edge-litert":
            continue
        try:
            __import__(module)
        except ImportError:
            continue
        try:
            from importlib import metadata  # noqa: PLC0415

            return f"{package} {metadata.version(package)}"
        except Exception:  # noqa: BLE001 (a vendored copy without dist-info)
            return f"{package} ?"
    return None


def open_model(path, runtime="interpreter", num_threads=2, use_xnnpack=True):
    """Loads a `.tflite` file with one of LiteRT's Python APIs.

    Args:
        path: str or path-like, the model file.
        runtime: `"interpreter"` (default) or `"compiled_model"`.
        num_threads: int, CPU threads. Defaults to 2.
        use_xnnpack: bool, let XNNPACK run the operators it supports (the
            default of both APIs); False runs LiteRT's builtin kernels only
            (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES` /
            `CpuKernelMode.BUILTIN`).

    Returns:
        `InterpreterModel` or `CompiledModelRuntime`: `signature_names()`,
        `input_specs(signature)`, `run(signature, **inputs)`.

    Raises:
        UnknownRuntimeError: `runtime` is not in `RUNTIMES` (an
            `InvalidOptionError`, as is a bad `num_threads`).
        RuntimeNotAvailableError: the installed LiteRT package lacks that API.
        FileNotFoundError: no such file.
        ValueError, RuntimeError: LiteRT could not load the file (callers
            that know the file format turn these into their own errors).
    """
    if runtime not in RUNTIMES:
        raise UnknownRuntimeError(
            f"Unknown runtime {runtime!r}; use one of {list(RUNTIMES)} ('interpreter': "
            "LiteRT's Interpreter and signature runners; 'compiled_model': LiteRT 2.x "
            "CompiledModel with tensor buffers).")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    if isinstance(num_threads, bool) or int(num_threads) != num_threads or num_threads < 1:
        raise InvalidOptionError(f"`num_threads` must be a positive int, got {num_threads!r}.")
    cls = InterpreterModel if runtime == "interpreter" else CompiledModelRuntime
    return cls(path, int(num_threads), bool(use_xnnpack))


class _Model:
    """What both runtimes share: input checks and the signature list."""

    runtime = None

    def signature_names(self):
        """Sorted list of the model's signature keys."""
        return sorted(self._signatures)

    def input_specs(self, signature):
        """dict input name → `TensorSpec` (-1 = dynamic) of `signature`."""
        return dict(self._specs(signature))

    def output_names(self, signature):
        """List of the output names of `signature`."""
        self._check_signature(signature)
        return list(self._signatures[signature]["outputs"])

    def _check_signature(self, signature):
        if signature not in self._signatures:
            raise ValueError(f"The model has no signature {signature!r}; it has "
                             f"{self.signature_names()}.")

    def _checked_inputs(self, signature, inputs):
        specs = self._specs(signature)
        unknown = sorted(set(inputs) - set(specs))
        missing = sorted(set(specs) - set(inputs))
        if unknown or missing:
            raise ValueError(
                f"Signature {signature!r} takes the inputs {sorted(specs)}; "
                + (f"unknown {unknown}" if unknown else "")
                + ("; " if unknown and missing else "")
                + (f"missing {missing}" if missing else "") + ".")
        arrays = {}
        for name, value in inputs.items():
            spec = specs[name]
            array = np.asarray(value)
            if array.dtype != spec.dtype:
                raise ValueError(f"Input {name!r} of {signature!r} must be {spec.dtype}, got "
                                 f"{array.dtype}.")
            if not spec.accepts(array.shape):
                raise ValueError(f"Input {name!r} of {signature!r} must have shape "
                                 f"{_shape_text(spec.shape)}, got {array.shape}.")
            arrays[name] = np.ascontiguousarray(array)
        return arrays

    def __repr__(self):
        return f"<{type(self).__name__} {self.path!r} ({self.version})>"


class InterpreterModel(_Model):
    """A model run by LiteRT's `Interpreter` (signature runners, one per signature)."""

    runtime = "interpreter"

    def __init__(self, path, num_threads=2, use_xnnpack=True):
        try:
            from ai_edge_litert import interpreter as module  # noqa: PLC0415
        except ImportError:
            try:
                from tflite_runtime import interpreter as module  # noqa: PLC0415
            except ImportError:
                raise RuntimeNotAvailableError(
                    "The 'interpreter' runtime needs the LiteRT Python package: "
                    f"`{_INSTALL_HINT}` (or the older `tflite-runtime`).") from None
        kwargs = {}
        if not use_xnnpack:
            kwargs["experimental_op_resolver_type"] = (
                module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path = path
        self.version = runtime_version("interpreter")
        self._interpreter = module.Interpreter(model_path=path, num_threads=num_threads,
                                               **kwargs)
        self._signatures = self._interpreter.get_signature_list()
        self._runners = {}
        self._spec_cache = {}

    def _runner(self, signature):
        self._check_signature(signature)
        if signature not in self._runners:
            self._runners[signature] = self._interpreter.get_signature_runner(signature)
        return self._runners[signature]

    def _specs(self, signature):
        if signature not in self._spec_cache:
            details = self._runner(signature).get_input_details()
            self._spec_cache[signature] = {
                name: TensorSpec(tuple(int(d) for d in detail.get("shape_signature",
                                                                  detail["shape"])),
                                 np.dtype(detail["dtype"]))
                for name, detail in details.items()}
        return self._spec_cache[signature]

    def run(self, signature, **inputs):
        """Runs `signature`; returns dict output name → ndarray (copies)."""
        arrays = self._checked_inputs(signature, inputs)
        outputs = self._runner(signature)(**arrays)
        return {name: np.array(value) for name, value in outputs.items()}


class CompiledModelRuntime(_Model):
    """A model run by LiteRT 2.x's `CompiledModel` with `TensorBuffer`s.

    Buffers are created once per (signature, input shapes) and reused; an
    input with a -1 in the model is resized (`resize_input_tensor_by_name`)
    before a call whose array shape differs from the compiled shape.
    """

    runtime = "compiled_model"

    def __init__(self, path, num_threads=2, use_xnnpack=True):
        try:
            # import_module looks the submodule up in sys.modules (not as an
            # attribute of the package), so a missing module is always seen.
            cm = importlib.import_module("ai_edge_litert.compiled_model")
        except ImportError:
            installed = runtime_version("interpreter")
            raise RuntimeNotAvailableError(
                "The 'compiled_model' runtime needs `ai_edge_litert.compiled_model` (LiteRT "
                f"2.x's CompiledModel API); installed: {installed or 'no LiteRT package'}. Run "
                f"`{_INSTALL_HINT}` (ai-edge-litert >= 2.2), or use runtime='interpreter'."
            ) from None
        self.path = path
        self.version = runtime_version("compiled_model")
        if not hasattr(cm, "CpuOptions"):
            # ai-edge-litert 2.0/2.1: no options, no resize, and their CompiledModel
            # refuses resource variables ("Element type (13) not currently supported").
            raise RuntimeNotAvailableError(
                f"The installed {self.version}'s CompiledModel cannot load training files "
                "(no resource variables before ai-edge-litert 2.2). The 'compiled_model' "
                f"runtime needs ai-edge-litert >= 2.2: `{_INSTALL_HINT}`, or use "
                "runtime='interpreter'.")
        cpu = cm.CpuOptions(num_threads=num_threads,
                            kernel_mode=None if use_xnnpack else cm.CpuKernelMode.BUILTIN)
        options = cm.Options(hardware_accelerators=cm.HardwareAccelerator.CPU, cpu_options=cpu)
        self._model = cm.CompiledModel.from_file(path, options=options)
        self._signatures = self._model.get_signature_list()
        with open(path, "rb") as f:
            self._declared = _declared_signatures(f.read())
        self._spec_cache = {}
        self._current = {}   # signature → {input: compiled shape}
        self._buffers = {}   # (signature, input shapes) → (input buffers, output buffers, output specs)

    def _details(self, signature, which):
        """{name: {"shape": current shape, "dtype": str}} of the inputs or outputs."""
        return getattr(self._model, f"get_{which}_tensor_details")(signature)

    def _specs(self, signature):
        self._check_signature(signature)
        if signature not in self._spec_cache:
            details = self._details(signature, "input")
            declared = self._declared.get(signature, {}).get("inputs", {})
            self._spec_cache[signature] = {
                name: TensorSpec(tuple(declared[name][0]) if name in declared
                                 else tuple(detail["shape"]), np.dtype(detail["dtype"]))
                for name, detail in details.items()}
            self._current[signature] = {name: tuple(detail["shape"])
                                        for name, detail in details.items()}
        return self._spec_cache[signature]

    def run(self, signature, **inputs):
        """Runs `signature`; returns dict output name → ndarray (copies)."""
        arrays = self._checked_inputs(signature, inputs)
        current = self._current[signature]
        for name, array in arrays.items():
            if tuple(array.shape) != current[name]:
                if 0 in array.shape:
                    raise ValueError(
                        f"Input {name!r} of {signature!r} has no elements (shape {array.shape}): "
                        "LiteRT's CompiledModel cannot resize an input to a 0 dimension. Pass "
                        "at least one element (for `train`'s channel lists: a channel the mask "
                        "does not select, which trains nothing), or use runtime='interpreter'.")
                # Only dynamic inputs get here (static ones were checked above).
                self._model.resize_input_tensor_by_name(signature, name, list(array.shape))
                current[name] = tuple(array.shape)
        key = (signature, tuple(sorted(current.items())))
        if key not in self._buffers:
            ins = {name: self._model.create_input_buffer_by_name(signature, name)
                   for name in arrays}
            details = self._details(signature, "output")
            outs = {name: self._model.create_output_buffer_by_name(signature, name)
                    for name in details}
            specs = {name: (tuple(d["shape"]), np.dtype(d["dtype"]))
                     for name, d in details.items()}
            self._buffers[key] = (ins, outs, specs)
        ins, outs, specs = self._buffers[key]
        for name, array in arrays.items():
            ins[name].write(array)
        self._model.run_by_name(signature, ins, outs)
        return {name: outs[name].read(int(np.prod(shape, dtype=np.int64)), dtype).reshape(shape)
                for name, (shape, dtype) in specs.items()}


_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                 6: np.bool_, 9: np.int8}


def _declared_signatures(data):
    """{signature: {"inputs"/"outputs": {name: (shape with -1, dtype)}}} from the flatbuffer.

    CompiledModel reports the current (resized) shapes only (and ai-edge-litert
    2.0/2.1 report none); the declared `shape_signature` says which dimensions
    may change.
    """
    from ai_edge_litert import schema_py_generated as schema  # noqa: PLC0415

    model = schema.Model.GetRootAsModel(data, 0)
    signatures = {}
    for s in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(s)
        subgraph = model.Subgraphs(signature.SubgraphIndex())

        def tensors(length, get):
            found = {}
            for i in range(length):
                entry = get(i)
                tensor = subgraph.Tensors(entry.TensorIndex())
                shape = (tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength()
                         else tensor.ShapeAsNumpy() if tensor.ShapeLength() else [])
                found[entry.Name().decode("utf-8")] = (
                    tuple(int(d) for d in shape),
                    np.dtype(_TENSOR_TYPES.get(int(tensor.Type()), np.float32)))
            return found

        signatures[signature.SignatureKey().decode("utf-8")] = {
            "inputs": tensors(signature.InputsLength(), signature.Inputs),
            "outputs": tensors(signature.OutputsLength(), signature.Outputs)}
    return signatures


def _shape_text(shape):
    return "(" + ", ".join("N" if d < 0 else str(d) for d in shape) + ("," if len(shape) == 1
                                                                       else "") + ")"
