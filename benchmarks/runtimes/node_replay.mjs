// node [--experimental-wasm-relaxed-simd] node_replay.mjs RECORDING_DIR
// Replays a recording with LiteRT.js in Node; prints `RESULT {json}`.
// The @litertjs/core install: $LITERT_NODE_DIR (default ~/.cache/keras_medyate_runtimes/node,
// made by setup_node.sh).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {replayRecording} from './litert_replay.js';
import {loadNodeLiteRt} from './node_litert.mjs';

const folder = process.argv[2];
const nodeDir = process.env.LITERT_NODE_DIR ||
    path.join(os.homedir(), '.cache', 'keras_medyate_runtimes', 'node');
const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'recording.json'), 'utf8'));
const blob = fs.readFileSync(path.join(folder, 'recording.bin'));
const bytes = new Uint8Array(fs.readFileSync(path.join(folder, 'model.tflite')));
const base = {runtime: 'litert.js', isa: `wasm32 (Node ${process.version})`,
              relaxed_simd: process.execArgv.includes('--experimental-wasm-relaxed-simd')};
let result;
try {
  const {litert, version} = await loadNodeLiteRt(nodeDir);
  base.version = `@litertjs/core ${version}`;
  const arrayBuffer = blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.byteLength);
  result = {...base, ...await replayRecording(litert, manifest, arrayBuffer, bytes,
                                               {log: (m) => console.error(m)})};
} catch (error) {
  result = {...base, loads: false, error: String(error && error.stack || error).slice(0, 500)};
}
console.log('RESULT ' + JSON.stringify(result));
process.exit(0);
