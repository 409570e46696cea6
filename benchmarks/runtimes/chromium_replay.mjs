// node chromium_replay.mjs RECORDING_DIR
// Replays a recording with LiteRT.js in headless Debian chromium: the page (replay.html) and
// the recording are served from 127.0.0.1 only. Prints `RESULT {json}`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {launchChromium, serve} from './browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const folder = path.resolve(process.argv[2]);
const nodeDir = process.env.LITERT_NODE_DIR ||
    path.join(os.homedir(), '.cache', 'keras_medyate_runtimes', 'node');
const version = JSON.parse(fs.readFileSync(
    path.join(nodeDir, 'node_modules', '@litertjs', 'core', 'package.json'), 'utf8')).version;
const server = await serve({'/node_modules/': path.join(nodeDir, 'node_modules'),
                            '/runtimes/': here, '/recording/': folder});
let result;
let browser;
try {
  browser = await launchChromium(nodeDir);
  const page = await browser.context.newPage();
  page.on('console', (m) => console.error('[page]', m.text()));
  await page.goto(`${server.url}/runtimes/replay.html`);
  await page.waitForFunction(() => window.__result !== undefined, null, {timeout: 600000});
  const agent = await page.evaluate(() => navigator.userAgent);
  const chrome = (agent.match(/(?:Headless)?Chrome\/[\d.]+/) || [agent])[0];
  result = {runtime: 'litert.js', version: `@litertjs/core ${version}`,
            isa: `wasm32 (${chrome})`, ...await page.evaluate(() => window.__result)};
} catch (error) {
  result = {runtime: 'litert.js', version: `@litertjs/core ${version}`, loads: false,
            error: String(error && error.message || error).slice(0, 500)};
} finally {
  if (browser) await browser.close();
  await server.close();
}
console.log('RESULT ' + JSON.stringify(result));
