// Helpers for the headless-Chromium runs (runtime matrix, web/trainer's test):
// a static file server bound to 127.0.0.1 only, and Debian's chromium driven by playwright-core.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
               '.json': 'application/json', '.wasm': 'application/wasm', '.css': 'text/css',
               '.png': 'image/png', '.jpg': 'image/jpeg', '.tflite': 'application/octet-stream',
               '.bin': 'application/octet-stream'};

/** Serves `routes` ({'/prefix/': directory}) on 127.0.0.1 (a free port); resolves to {url, close}. */
export function serve(routes) {
  const prefixes = Object.keys(routes).sort((a, b) => b.length - a.length);
  const server = http.createServer((request, response) => {
    const url = decodeURIComponent(new URL(request.url, 'http://127.0.0.1').pathname);
    const prefix = prefixes.find((p) => url.startsWith(p));
    let file = prefix && path.resolve(routes[prefix], '.' + path.sep + url.slice(prefix.length));
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!file || !file.startsWith(path.resolve(routes[prefix])) || !fs.existsSync(file)) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, {'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
                             'Cache-Control': 'no-store'});
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      close: () => new Promise((done) => server.close(done)),
    }));
  });
}

/** Launches headless Debian chromium (fresh profile, no network beyond 127.0.0.1 pages). */
export async function launchChromium(nodeDir) {
  const {chromium} = await import(path.join(nodeDir, 'node_modules', 'playwright-core', 'index.mjs'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'medyate-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const close = async () => {
    await context.close();
    fs.rmSync(profile, {recursive: true, force: true});
  };
  return {context, close};
}
