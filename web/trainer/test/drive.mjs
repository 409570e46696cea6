// node web/trainer/test/drive.mjs MODEL.tflite SCREENSHOT.png [EPOCHS] [LEARNING_RATE]
// Serves web/trainer and the model from 127.0.0.1 only, opens the page in headless Debian
// chromium (playwright-core) in demo mode, waits for training to finish, takes a screenshot
// and prints `RESULT {json}` (window.__trainer: status, history, steps, error).
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {launchChromium, serve} from '../../../benchmarks/runtimes/browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const page_dir = path.dirname(here);
const [modelPath, screenshot, epochs = '6', lr = ''] = process.argv.slice(2);
const server = await serve({'/model/': path.dirname(path.resolve(modelPath)), '/': page_dir});
let result;
let browser;
try {
  browser = await launchChromium(page_dir);
  const page = await browser.context.newPage({viewport: {width: 1000, height: 900}});
  page.on('console', (m) => console.error('[page]', m.text()));
  const query = new URLSearchParams({model: `/model/${path.basename(modelPath)}`, demo: '1',
                                     epochs, autostart: '1', ...(lr ? {lr} : {})});
  await page.goto(`${server.url}/index.html?${query}`);
  await page.waitForFunction(() => ['done', 'error'].includes(window.__trainer?.status), null,
                             {timeout: 600000});
  if (screenshot) await page.screenshot({path: screenshot, fullPage: true});
  result = await page.evaluate(() => window.__trainer);
} catch (error) {
  result = {status: 'error', error: String(error && error.message || error)};
} finally {
  if (browser) await browser.close();
  await server.close();
}
console.log('RESULT ' + JSON.stringify(result));
