// Drives the viewer in headless Chromium for crates/cli/tests/cli/ui_browser.rs
// and prints what the page showed as JSON lines; the Rust test asserts.
//
//   node check.mjs static URL TRACE_WITH_BUILDSET LINKING_TRACE
//   node check.mjs live URL          (reads "killed" on stdin, see below)
//   node check.mjs open URL TRACE    (time to draw one trace)
//   node check.mjs search URL QUERY  (time to answer a search)
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import { launchOptions } from './browser.mjs';

const [scenario, url, ...rest] = process.argv.slice(2);
const browser = await chromium.launch(launchOptions());
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const consoleMessages = [];
page.on('console', (m) => consoleMessages.push(m.type() + ': ' + m.text()));
page.on('pageerror', (e) => consoleMessages.push('pageerror: ' + e.message));
const say = (what) => console.log(JSON.stringify(what));

// Every span row of the page as {span, name, state, error, hidden, red, dur}.
const rows = () => page.$$eval('.span-row', (list) => list.map((r) => {
  const bar = r.querySelector('.bar');
  return {
    span: r.dataset.span,
    name: r.dataset.name,
    depth: Number(r.dataset.depth),
    state: r.dataset.state,
    error: r.classList.contains('error'),
    hidden: r.hidden,
    bar: getComputedStyle(bar).backgroundColor,
    nameColour: getComputedStyle(r.querySelector('.name')).color,
    dur: r.querySelector('.dur').textContent,
  };
}));

async function staticChecks(traceId, linkingTrace) {
  await page.goto(url + '#/trace/' + traceId);
  await page.waitForSelector('.span-row');
  const shown = await rows();
  const ticks = await page.$$eval('.axis .tick', (t) => t.map((x) => x.textContent));
  // Collapse the first BuildSet with children, then expand it again.
  const buildSet = shown.findIndex((r, i) => r.name === 'BuildSet' &&
    shown[i + 1] && shown[i + 1].depth > r.depth);
  const toggle = page.locator('.span-row').nth(buildSet).locator('.toggle');
  await toggle.click();
  const collapsed = await rows();
  await toggle.click();
  const expanded = await rows();
  say({ step: 'trace', shown, ticks, buildSet, collapsed, expanded });

  // The search box, as a user types.
  await page.goto(url);
  await page.waitForSelector('.trace-row');
  await page.fill('#q', 'ref_number=2');
  await page.waitForFunction(() => location.hash.includes('ref_number'));
  await page.waitForFunction(() => document.querySelector('.count') &&
    !document.querySelector('.count').textContent.includes('of 11 '));
  const found = await page.$$eval('.trace-row', (l) => l.map((r) => r.dataset.trace));
  say({ step: 'search', found });

  // A link to another trace, opened from the details pane.
  await page.goto(url + '#/trace/' + linkingTrace);
  await page.waitForSelector('.span-row');
  await page.locator('.span-row').first().click();
  await page.click('.link-open');
  await page.waitForFunction((from) => {
    const head = document.querySelector('.trace-head');
    return head && head.dataset.trace !== from;
  }, linkingTrace);
  const opened = await page.$eval('.trace-head', (h) => h.dataset.trace);
  const selected = await page.$$eval('.span-row.selected', (l) => l.map((r) => r.dataset.span));
  say({ step: 'link', opened, selected, console: consoleMessages });
}

// The page is opened once: the trace list, then the first running trace.
// Prints "running" once QueueItem, BuildSet and Build run; the test then
// SIGKILLs the scheduler and writes "killed"; the rows are sampled until
// all three are finished, and each sample must show all three.
async function liveChecks() {
  await page.goto(url);
  await page.evaluate(() => { window.openedOnce = true; });
  // The test enqueues its change only now: a slow browser start cannot
  // miss the running spans.
  say({ step: 'ready' });
  await page.waitForSelector('.trace-row.is-running', { timeout: 60000 });
  await page.click('.trace-row.is-running .trace-title');
  const wanted = ['QueueItem', 'BuildSet', 'Build'];
  // Per name, a row still running if there is one (the lint Build ends at
  // once; the unit Build runs on), else the first.
  const states = async () => {
    const all = await rows();
    return wanted.map((name) => {
      const named = all.filter((r) => r.name === name);
      return named.find((r) => r.state !== 'finished') || named[0] || null;
    });
  };
  const deadline = Date.now() + 60000;
  let seen;
  for (;;) {
    seen = await states();
    if (seen.every((r) => r && r.state === 'running')) break;
    if (Date.now() > deadline) throw new Error('never running: ' + JSON.stringify(seen));
    await page.waitForTimeout(100);
  }
  const runningDurations = [];
  await page.waitForTimeout(1200);
  runningDurations.push((await states()).map((r) => r.dur));
  say({ step: 'running', rows: seen, grown: runningDurations });
  const input = readline.createInterface({ input: process.stdin });
  for await (const line of input) if (line.trim() === 'killed') break;
  input.close();
  process.stdin.destroy();
  const samples = [];
  const end = Date.now() + 90000;
  for (;;) {
    const now = await states();
    samples.push(now.map((r) => (r ? r.state : 'vanished')));
    if (now.every((r) => r && r.state === 'finished')) {
      const reloaded = await page.evaluate(() => !window.openedOnce);
      say({ step: 'finished', rows: now, samples, reloaded, console: consoleMessages });
      break;
    }
    if (Date.now() > end) {
      say({ step: 'timeout', rows: now, samples });
      break;
    }
    await page.waitForTimeout(200);
  }
}

async function openTrace(traceId) {
  const started = Date.now();
  await page.goto(url + '#/trace/' + traceId);
  const loaded = Date.now() - started;
  await page.waitForFunction(() => document.querySelector('.axis .tick'), null,
    { timeout: 60000, polling: 10 });
  const ms = Date.now() - started;
  await page.waitForFunction(() => document.querySelector('.waterfall[data-complete]'), null,
    { timeout: 60000, polling: 10 });
  const all = Date.now() - started;
  const rows = await page.$$eval('.span-row', (l) => l.length);
  say({ step: 'open', ms, all_rows_ms: all, loaded_ms: loaded, rows });
}

async function searchTime(query) {
  await page.goto(url);
  await page.waitForSelector('.trace-row');
  const started = Date.now();
  await page.fill('#q', query);
  await page.waitForFunction((q) => location.hash.includes(encodeURIComponent(q).slice(0, 5)) &&
    document.querySelector('.count') && !document.querySelector('.count').textContent.startsWith('1–50 of 10000'),
  query, { timeout: 60000 });
  const ms = Date.now() - started;
  say({ step: 'search', ms, count: await page.$eval('.count', (c) => c.textContent) });
}

try {
  if (scenario === 'static') await staticChecks(rest[0], rest[1]);
  else if (scenario === 'live') await liveChecks();
  else if (scenario === 'open') await openTrace(rest[0]);
  else if (scenario === 'search') await searchTime(rest[0]);
  else throw new Error('unknown scenario ' + scenario);
} catch (error) {
  say({ step: 'error', message: String(error && error.stack || error), console: consoleMessages });
  process.exitCode = 1;
} finally {
  await browser.close();
}
