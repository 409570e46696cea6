// Replays a keras-medyate runtime recording (benchmarks/runtime_matrix.py `record`) with
// LiteRT.js (@litertjs/core): the same module runs in Node (node_replay.mjs) and in a
// browser page (replay.html, driven by chromium_replay.mjs).
//
//   const result = await replayRecording(litert, manifest, blob, modelBytes);
//
// litert: the @litertjs/core module, already loaded with loadLiteRt(); manifest: the parsed
// recording.json; blob: ArrayBuffer of recording.bin; modelBytes: Uint8Array of model.tflite.
// Returns {loads, error?, signatures: {name: {calls, failed, max_abs_diff}},
// resample_identical, failed_calls, first_error}: the fields of the Python replay.

const ARRAYS = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array};

function tensorData(blob, entry) {
  const Type = ARRAYS[entry.dtype];
  if (!Type) throw new Error(`unsupported recorded dtype ${entry.dtype}`);
  // slice(): a copy that starts at offset 0 (LiteRT.js keeps no view on it).
  return new Type(blob.slice(entry.offset, entry.offset + entry.nbytes));
}

export async function replayRecording(litert, manifest, blob, modelBytes, options = {}) {
  const log = options.log || (() => {});
  let model;
  try {
    model = await litert.loadAndCompile(modelBytes, {accelerator: 'wasm'});
  } catch (error) {
    return {loads: false, error: String(error && error.message || error).slice(0, 500)};
  }
  const signatures = {};
  let failed = 0;
  let firstError = null;
  let resampleIdentical = true;
  const started = Date.now();
  for (const [index, call] of manifest.calls.entries()) {
    const name = call.signature;
    const entry = signatures[name] ||= {calls: 0, failed: 0, max_abs_diff: 0};
    entry.calls += 1;
    const inputs = {};
    let outputs = null;
    try {
      for (const [key, spec] of Object.entries(call.inputs)) {
        inputs[key] = new litert.Tensor(tensorData(blob, spec), spec.shape);
      }
      outputs = await model.run(name, inputs);
      for (const [key, spec] of Object.entries(call.outputs)) {
        const tensor = outputs[key];
        if (!tensor) throw new Error(`output ${key} missing`);
        const got = tensor.toTypedArray();
        const want = tensorData(blob, spec);
        if (got.length !== want.length) {
          throw new Error(`output ${key} has ${got.length} elements, recorded ${want.length}`);
        }
        let diff = 0;
        let magnitude = 0;
        let identical = true;
        for (let i = 0; i < want.length; i++) {
          magnitude = Math.max(magnitude, Math.abs(Number(want[i])));
          const d = Math.abs(Number(got[i]) - Number(want[i]));
          if (!(d <= diff)) diff = d;   // NaN propagates
          if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) identical = false;
        }
        entry.max_abs_diff = Math.max(entry.max_abs_diff, diff);
        entry.max_abs_recorded = Math.max(entry.max_abs_recorded || 0, magnitude);
        if (name === 'resample' && !identical) resampleIdentical = false;
      }
    } catch (error) {
      entry.failed += 1;
      failed += 1;
      const text = String(error && error.message || error).slice(0, 300);
      firstError ||= `${name}: ${text}`;
      if (name === 'resample') resampleIdentical = false;
      log(`call ${index} ${name} failed: ${text}`);
    } finally {
      for (const tensor of Object.values(inputs)) tensor.delete();
      if (outputs) for (const tensor of Object.values(outputs)) tensor.delete();
    }
  }
  model.delete();
  return {loads: true, seconds: (Date.now() - started) / 1000, signatures,
          resample_identical: resampleIdentical, failed_calls: failed, first_error: firstError};
}
