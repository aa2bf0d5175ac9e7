// Screenshot of a page: node shoot.mjs URL OUT.png [WIDTH HEIGHT] [CLICK_SELECTOR]
import { chromium } from 'playwright-core';
import { launchOptions } from './browser.mjs';

const [url, out, width = '1400', height = '900', click] = process.argv.slice(2);
const browser = await chromium.launch(launchOptions());
const page = await browser.newPage({ viewport: { width: Number(width), height: Number(height) } });
await page.goto(url);
await page.waitForSelector('#main > *');
if (click) {
  await page.click(click);
}
await page.waitForTimeout(300);
await page.screenshot({ path: out });
await browser.close();
