// Loads @litertjs/core in Node. The package targets browsers: its Wasm loader needs `self`,
// `importScripts` (run the Emscripten script in this context), `require` and `__dirname`.
// Node 20 enables relaxed SIMD only with --experimental-wasm-relaxed-simd; without it
// LiteRT.js loads its `compat` Wasm build.
import fs from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {pathToFileURL} from 'node:url';
import vm from 'node:vm';

export async function loadNodeLiteRt(nodeDir) {
  const core = path.join(nodeDir, 'node_modules', '@litertjs', 'core');
  const wasmDir = path.join(core, 'wasm');
  globalThis.self = globalThis;
  globalThis.require = createRequire(path.join(core, 'package.json'));
  globalThis.__dirname = wasmDir;
  globalThis.importScripts = (url) => {
    const file = String(url).startsWith('file:') ? new URL(url).pathname : String(url);
    vm.runInThisContext(fs.readFileSync(file, 'utf8'), {filename: file});
  };
  const litert = await import(pathToFileURL(path.join(core, 'dist', 'index.js')).href);
  await litert.loadLiteRt(wasmDir + '/');
  const version = JSON.parse(fs.readFileSync(path.join(core, 'package.json'), 'utf8')).version;
  return {litert, version};
}
