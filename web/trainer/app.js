// The page: picks a model and images, runs epochs of resample + train with LiteRT.js and
// shows loss and accuracy. Query parameters (used by the test): model=URL (load it),
// demo=1 (demo images), epochs, lr, seed, autostart=1. State for tests: window.__trainer.
import * as litert from '@litertjs/core';
import {MedyateTrainer} from './medyate.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = window.__trainer = {status: 'loading', history: [], steps: [], error: null};
let trainer = null;
let images = [];            // [{pixels: Float32Array(H*W*3) in [0,255], label, canvas}]

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function fail(error) {
  console.error(error);
  state.status = 'error';
  state.error = String(error && error.message || error);
  setStatus(state.error, true);
}

async function loadModel(bytes) {
  if (trainer) trainer.delete();
  trainer = await MedyateTrainer.load(litert, bytes);
  const m = trainer.meta;
  $('meta').textContent = `${m.model_name}: input ${m.input_shape.join('×')}, ${m.num_classes} classes, ` +
      `train batch ${m.batch_size}, ${m.pool.size} channels in ${m.pool.layers.length} layers, ` +
      `budget ${m.budget_units} units` +
      (trainer.dynamicInputs.length ? ` — dynamic inputs (LiteRT.js cannot run them): ${trainer.dynamicInputs.join(', ')}` : '');
  $('lr').value = m.learning_rate;
  images = [];
  buildClassInputs();
  $('train').disabled = false;
  setStatus('pick images (or demo images), then Train');
}

function buildClassInputs() {
  const box = $('classes');
  box.innerHTML = '';
  for (let k = 0; k < trainer.numClasses; k++) {
    const div = document.createElement('div');
    div.className = 'class';
    div.innerHTML = `<div>class ${k} <input type="file" accept="image/*" multiple></div><div class="thumbs"></div>`;
    div.querySelector('input').addEventListener('change', async (event) => {
      for (const file of event.target.files) addImage(await fromFile(file), k);
    });
    box.appendChild(div);
  }
}

function addImage(canvas, label) {
  const [h, w] = trainer.inputShape;
  const rgba = canvas.getContext('2d').getImageData(0, 0, w, h).data;
  const pixels = new Float32Array(h * w * 3);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < 3; c++) pixels[i * 3 + c] = rgba[i * 4 + c];
  images.push({pixels, label, canvas});
  $('classes').children[label].querySelector('.thumbs').appendChild(canvas);
}

async function fromFile(file) {
  const [h, w] = trainer.inputShape;
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const side = Math.min(bitmap.width, bitmap.height);   // centre crop, then resize
  canvas.getContext('2d').drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2,
                                    side, side, 0, 0, w, h);
  return canvas;
}

const TINTS = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]];

/** Demo images: class k = a colour tint (TINTS[k mod 6]) and a bright band at rows k·H/K. */
function demoImages(perClass = 6, seed = 1) {
  const [h, w] = trainer.inputShape;
  const k = trainer.numClasses;
  let s = seed >>> 0;
  const random = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
  for (let label = 0; label < k; label++) {
    for (let n = 0; n < perClass; n++) {
      const canvas = document.createElement('canvas');
      canvas.width = w;
      canvas.height = h;
      const context = canvas.getContext('2d');
      const data = context.createImageData(w, h);
      const band = [Math.floor(label * h / k), Math.floor((label + 1) * h / k)];
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = (y * w + x) * 4;
          for (let c = 0; c < 3; c++) {
            let v = 90 + 70 * random();
            v += 60 * TINTS[label % TINTS.length][c];
            if (y >= band[0] && y < band[1]) v += 80;
            data.data[i + c] = Math.min(255, v);
          }
          data.data[i + 3] = 255;
        }
      }
      context.putImageData(data, 0, 0);
      addImage(canvas, label);
    }
  }
}

function scaled(pixels) {
  const mode = $('scaling').value;
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    out[i] = mode === 'pm1' ? pixels[i] / 127.5 - 1 : mode === '01' ? pixels[i] / 255 : pixels[i];
  }
  return out;
}

async function accuracy() {
  const per = images[0].pixels.length;
  const x = new Float32Array(images.length * per);
  images.forEach((image, i) => x.set(scaled(image.pixels), i * per));
  const p = await trainer.infer(x, images.length);
  let correct = 0;
  images.forEach((image, i) => {
    const row = p.subarray(i * trainer.numClasses, (i + 1) * trainer.numClasses);
    if (row.indexOf(Math.max(...row)) === image.label) correct++;
  });
  return correct / images.length;
}

function drawChart() {
  const losses = state.steps.map((s) => s.loss);
  const svg = $('chart');
  if (!losses.length) return;
  const max = Math.max(...losses) * 1.05;
  const points = losses.map((l, i) =>
      `${20 + (420 * i) / Math.max(1, losses.length - 1)},${150 - (140 * l) / max}`).join(' ');
  svg.innerHTML = `<text x="22" y="14" font-size="11">loss per step (max ${max.toFixed(3)})</text>` +
      `<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="${points}"/>`;
}

function addRow(cells) {
  const row = document.createElement('tr');
  row.innerHTML = cells.map((c) => `<td>${c}</td>`).join('');
  $('history').querySelector('tbody').appendChild(row);
}

async function train() {
  if (!images.length) throw new Error('Pick some images first (or use the demo images).');
  $('train').disabled = true;
  state.status = 'training';
  const epochs = Number($('epochs').value);
  const seed = Number($('seed').value);
  await trainer.setLearningRate(Number($('lr').value));
  const batch = trainer.batchSize;
  const per = images[0].pixels.length;
  const initial = await accuracy();
  state.history.push({epoch: 0, accuracy: initial, loss: null});
  addRow([0, '—', '—', 0, '—', (100 * initial).toFixed(0) + ' %']);
  let s = (seed + 7) >>> 0;
  const random = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const selection = await trainer.resample(seed);
    const order = images.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {   // Fisher-Yates shuffle
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    while (order.length < batch) order.push(order[order.length % images.length]);  // too few: repeat
    const steps = Math.floor(order.length / batch);
    const losses = [];
    for (let step = 0; step < steps; step++) {
      const x = new Float32Array(batch * per);
      const y = new Int32Array(batch);
      for (let b = 0; b < batch; b++) {
        const image = images[order[step * batch + b]];
        x.set(scaled(image.pixels), b * per);
        y[b] = image.label;
      }
      const loss = await trainer.train(x, y);
      losses.push(loss);
      state.steps.push({epoch, step, loss});
      drawChart();
      setStatus(`epoch ${epoch}/${epochs}, step ${step + 1}/${steps}: loss ${loss.toFixed(4)}`);
    }
    const mean = losses.reduce((a, b) => a + b, 0) / losses.length;
    const acc = await accuracy();
    state.history.push({epoch, loss: mean, accuracy: acc, channels: selection.numSelected,
                        cost: selection.costUnits});
    addRow([epoch, selection.numSelected, `${selection.costUnits} / ${trainer.meta.budget_units}`,
            steps, mean.toFixed(4), (100 * acc).toFixed(0) + ' %']);
  }
  state.status = 'done';
  setStatus(`done: ${epochs} epochs, loss ${state.history[1].loss.toFixed(4)} → ` +
            `${state.history[state.history.length - 1].loss.toFixed(4)}`);
  $('train').disabled = false;
}

$('model-file').addEventListener('change', async (event) => {
  try {
    await loadModel(new Uint8Array(await event.target.files[0].arrayBuffer()));
  } catch (error) { fail(error); }
});
$('demo').addEventListener('click', () => {
  if (!trainer) return fail('Load a model first.');
  demoImages();
  setStatus(`${images.length} demo images; press Train`);
});
$('train').addEventListener('click', () => train().catch(fail));

try {
  setStatus('loading LiteRT.js…');
  await litert.loadLiteRt(new URL('./node_modules/@litertjs/core/wasm/', location.href).href);
  state.status = 'ready';
  setStatus('load a model');
  for (const [key, id] of [['epochs', 'epochs'], ['seed', 'seed']]) {
    if (params.has(key)) $(id).value = params.get(key);
  }
  if (params.has('model')) {
    const response = await fetch(params.get('model'));
    if (!response.ok) throw new Error(`Could not fetch ${params.get('model')}: ${response.status}`);
    await loadModel(new Uint8Array(await response.arrayBuffer()));
    if (params.has('lr')) $('lr').value = params.get('lr');
    if (params.get('demo') === '1') demoImages();
    if (params.get('autostart') === '1') await train();
  }
} catch (error) {
  fail(error);
}
