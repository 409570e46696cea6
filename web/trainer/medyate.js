// The browser twin of tflite_export.OnDeviceTrainer: drives a file written by
// tflite_export.export_training_model with LiteRT.js (@litertjs/core, Wasm CPU).
//
//   import * as litert from '@litertjs/core';
//   await litert.loadLiteRt('./node_modules/@litertjs/core/wasm/');
//   const trainer = await MedyateTrainer.load(litert, new Uint8Array(bytes));
//   const selection = await trainer.resample(0);        // MeDyate, in the browser
//   const loss = await trainer.train(xBatch, yBatch);    // one SGD step (Float32Array, Int32Array)
//   const probabilities = await trainer.infer(images, n);
//
// LiteRT.js cannot resize inputs: every input of the file must have a static shape
// (export with kernel_gradients="dense" and infer_batch_size=N, or a static-shape default).

const UNUSED = () => new Int32Array([0]);

export class MedyateTrainer {
  constructor(litert, model, meta) {
    this.litert = litert;
    this.model = model;
    this.meta = meta;
    this.batchSize = meta.batch_size;
    this.inputShape = meta.input_shape;           // [H, W, C]
    this.numClasses = meta.num_classes;
    this.poolSize = meta.pool.size;
    this.mask = new Float32Array(this.poolSize);  // the current selection (0/1 per pool channel)
    const signatures = model.signatures;
    this.inputDetails = {};
    for (const name of Object.keys(signatures)) {
      this.inputDetails[name] = Object.fromEntries(
          signatures[name].getInputDetails().map((d) => [d.name, Array.from(d.shape)]));
    }
    const dynamic = [];
    for (const [signature, inputs] of Object.entries(this.inputDetails)) {
      for (const [name, shape] of Object.entries(inputs)) {
        if (shape.some((d) => d < 0)) dynamic.push(`${signature}/${name} [${shape}]`);
      }
    }
    this.dynamicInputs = dynamic;
    const infer = this.inputDetails.infer?.x;
    this.inferBatch = infer && infer[0] > 0 ? infer[0] : null;
  }

  /** Loads and compiles the file; reads its metadata (the `metadata` signature). */
  static async load(litert, bytes) {
    const model = await litert.loadAndCompile(bytes, {accelerator: 'wasm'});
    const raw = await MedyateTrainer.runOn(litert, model, 'metadata', {unused: UNUSED()}, {unused: [1]});
    const meta = JSON.parse(new TextDecoder().decode(raw.json));
    if (meta.format !== 'keras_medyate.tflite_export') {
      model.delete();
      throw new Error('This LiteRT file was not written by tflite_export.export_training_model.');
    }
    const trainer = new MedyateTrainer(litert, model, meta);
    const state = await trainer.run('get_state', {unused: UNUSED()});
    trainer.mask = state.mask;
    return trainer;
  }

  static async runOn(litert, model, signature, arrays, shapes) {
    const inputs = {};
    let outputs = null;
    try {
      for (const [name, array] of Object.entries(arrays)) {
        inputs[name] = new litert.Tensor(array, shapes[name]);
      }
      outputs = await model.run(signature, inputs);
      const result = {};
      for (const [name, tensor] of Object.entries(outputs)) result[name] = tensor.toTypedArray().slice();
      return result;
    } finally {
      for (const tensor of Object.values(inputs)) tensor.delete();
      if (outputs) for (const tensor of Object.values(outputs)) tensor.delete();
    }
  }

  /** Runs one signature with typed arrays; returns {output name: typed array}. */
  async run(signature, arrays, shapes = {}) {
    const declared = this.inputDetails[signature] || {};
    const full = {};
    for (const name of Object.keys(arrays)) {
      full[name] = shapes[name] || declared[name];
      if (full[name].some((d) => d < 0)) {
        throw new Error(`Input ${signature}/${name} has a dynamic shape [${full[name]}]; ` +
                        'LiteRT.js cannot resize inputs. Re-export the file with static shapes ' +
                        '(kernel_gradients="dense", infer_batch_size=N).');
      }
    }
    return MedyateTrainer.runOn(this.litert, this.model, signature, arrays, full);
  }

  /** MeDyate on the device (call once per epoch): {mask, costUnits, numSelected, epoch}. */
  async resample(seed) {
    const out = await this.run('resample', {seed: new Int32Array([seed])});
    this.mask = out.mask;
    return {mask: out.mask, costUnits: out.cost_units[0], numSelected: out.num_selected[0],
            epoch: out.epoch[0]};
  }

  /**
   * `train`'s per-layer channel inputs for the current mask (none for a "dense" export).
   * A fixed-capacity static form (an entry with `capacity`) is padded with its `pad`
   * value (default -1) and gets its count when the entry names a `count_tensor`.
   */
  channelInputs() {
    const entries = this.meta.train_channel_inputs || [];
    const {offsets, num_channels: counts, layers} = this.meta.pool;
    const arrays = {};
    const shapes = {};
    for (const entry of entries) {
      const layer = layers.indexOf(entry.layer);
      const selected = [];
      for (let c = 0; c < counts[layer]; c++) if (this.mask[offsets[layer] + c] > 0) selected.push(c);
      const declared = this.inputDetails.train[entry.tensor];
      if (declared[0] >= 0 && entry.capacity === undefined && declared[0] !== selected.length) {
        throw new Error(`train/${entry.tensor} takes exactly ${declared[0]} channels`);
      }
      const capacity = declared[0] >= 0 ? declared[0] : selected.length;
      if (selected.length > capacity) {
        throw new Error(`${selected.length} channels of ${entry.layer} are selected, but this ` +
                        `file's static train takes at most ${capacity}.`);
      }
      const list = new Int32Array(capacity).fill(entry.pad ?? -1);
      list.set(selected.slice(0, capacity));
      arrays[entry.tensor] = list;
      shapes[entry.tensor] = [capacity];
      if (entry.count_tensor) {
        arrays[entry.count_tensor] = new Int32Array([Math.min(selected.length, capacity)]);
        shapes[entry.count_tensor] = [1];
      }
    }
    return {arrays, shapes};
  }

  /** One SGD step on exactly batchSize images (x: Float32Array B*H*W*C, y: Int32Array B). */
  async train(x, y) {
    const {arrays, shapes} = this.channelInputs();
    const out = await this.run('train', {x, y, ...arrays}, shapes);
    return out.loss[0];
  }

  /** Probabilities (Float32Array n*K) for n images (padded to the static infer batch). */
  async infer(x, n) {
    const per = this.inputShape.reduce((a, b) => a * b, 1);
    const batch = this.inferBatch;
    if (!batch) {
      throw new Error('infer has a dynamic batch, which LiteRT.js cannot run; export with ' +
                      'infer_batch_size=N.');
    }
    const probabilities = new Float32Array(n * this.numClasses);
    for (let start = 0; start < n; start += batch) {
      const chunk = new Float32Array(batch * per);
      const count = Math.min(batch, n - start);
      chunk.set(x.subarray(start * per, (start + count) * per));
      const out = await this.run('infer', {x: chunk});
      probabilities.set(out.probabilities.subarray(0, count * this.numClasses),
                        start * this.numClasses);
    }
    return probabilities;
  }

  async setLearningRate(rate) {
    const out = await this.run('set_learning_rate', {learning_rate: new Float32Array([rate])});
    return out.learning_rate[0];
  }

  async getWeights() {
    return this.run('get_weights', {unused: UNUSED()});
  }

  delete() {
    this.model.delete();
  }
}
