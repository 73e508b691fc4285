// Browser test of the console against a running `expressway dev` (started by run.sh).
// Env: CONSOLE_URL (http://localhost:PORT/console/), EXPRESSWAY_BIN, BROKERS, SCREENSHOTS (dir).
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

const url = process.env.CONSOLE_URL;
const bin = process.env.EXPRESSWAY_BIN;
const brokers = process.env.BROKERS;
const shots = process.env.SCREENSHOTS || 'target/console-screenshots';
assert.ok(url && bin && brokers, 'CONSOLE_URL, EXPRESSWAY_BIN and BROKERS are required');
mkdirSync(shots, { recursive: true });

let passed = 0;
async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok ${passed} - ${name} (${Date.now() - t0} ms)`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
const failed = [];
page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
const external = [];
page.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin)) external.push(r.url()); });
let posts = 0;
page.on('request', (r) => { if (r.method() === 'POST') posts++; });

// Opens a view and waits until it is rendered (a hash change keeps the old view's DOM a moment).
async function view(hash, key) {
  await page.goto(url + hash);
  await page.waitForSelector(`#main[data-view="${key}"]`);
}
const stateNodes = () => page.$$eval('#graph g.node[data-state]', (ns) => ns.map((n) => n.getAttribute('data-state')).sort());

try {
  await step('machine list shows every machine of the definitions directory', async () => {
    await page.goto(url);
    await page.waitForSelector('#machines tr[data-machine="hello"]');
    const names = await page.$$eval('#machines tbody tr', (rs) => rs.map((r) => r.getAttribute('data-machine')));
    assert.deepEqual(names, ['hello', 'orders']);
    assert.equal(await page.textContent('#machines tr[data-machine="hello"] td:nth-child(5)'), 'ALL + data');
    await page.waitForSelector('#live.on');
  });

  await step('the graph of examples/hello.asl.json has one node per state, with its edges', async () => {
    await page.click('a.machine-link:text-is("hello")');
    await page.waitForSelector('#main[data-view="machine:hello"] #graph svg');
    assert.deepEqual(await stateNodes(), ['Big', 'Done', 'Greet', 'Small', 'Tier']);
    assert.equal(await page.getAttribute('#graph g.node[data-state="Tier"]', 'data-type'), 'Choice');
    const edges = await page.$$eval('#graph g.edge', (es) => es.map((e) => `${e.dataset.from}>${e.dataset.to}:${e.dataset.kind}`));
    for (const e of ['Greet>Tier:next', 'Tier>Big:choice', 'Tier>Small:default', 'Big>Done:next', 'Small>Done:next']) {
      assert.ok(edges.includes(e), `edge ${e} in ${edges}`);
    }
    const def = JSON.parse(await page.textContent('#definition'));
    assert.equal(def.StartAt, 'Greet');
  });

  await step('the graph of a Parallel/Map/Catch machine nests branches and marks Catch edges', async () => {
    await view('#/machine/orders', 'machine:orders');
    assert.deepEqual(await stateNodes(), ['Charge', 'Done', 'Fanout', 'Line', 'Lines', 'Price', 'Refund', 'Validate']);
    // Fanout's branches group, its two branches, and Lines' item processor.
    assert.equal(await page.locator('#graph g.cluster').count(), 4);
    assert.equal(await page.locator('#graph g.edge[data-kind="catch"][data-from="Charge"][data-to="Refund"]').count(), 1);
    assert.equal(await page.locator('#graph g.edge[data-kind="branch"][data-from="Fanout"]').count(), 2);
  });

  let arn;
  const payload = '<script>window.__xss = 1</script><img src=x onerror="window.__xss=2">';
  await step('start execution validates the JSON input and starts through the page', async () => {
    await view('#/machine/hello', 'machine:hello');
    const before = posts;
    await page.fill('#start-input', '{"name": "Ada",');
    await page.click('#start-button');
    await page.waitForSelector('#start-error');
    assert.match(await page.textContent('#start-error'), /not valid JSON/);
    assert.equal(posts, before, 'invalid JSON is not sent');
    await page.fill('#start-input', JSON.stringify({ name: payload, amount: 150 }));
    await page.click('#start-button');
    await page.waitForSelector('#started-link');
    arn = await page.textContent('#started-link');
    assert.match(arn, /^arn:aws:states:us-east-1:123456789012:express:hello:/);
    // Appears in the list, then turns SUCCEEDED without a reload (server-sent events).
    await page.waitForSelector(`#executions tr[data-arn="${arn}"][data-status="SUCCEEDED"]`, { timeout: 15000 });
  });

  await step('an execution started with `expressway start` appears live with its status', async () => {
    const marker = await page.evaluate(() => { window.__samePage = Math.random(); return window.__samePage; });
    const out = execFileSync(bin, ['start', '--brokers', brokers, 'hello', '--input', '{"name":"Live","amount":5}', '--json'], { encoding: 'utf8' });
    const { name } = JSON.parse(out.trim().split('\n').pop());
    const row = `#executions tr.execution:has(a.execution-link:text-is("${name}"))`;
    await page.waitForSelector(row + '[data-status="SUCCEEDED"]', { timeout: 15000 });
    assert.equal(await page.evaluate(() => window.__samePage), marker, 'no reload happened');
    // Newest first.
    assert.equal(await page.textContent('#executions tbody tr:first-child a.execution-link'), name);
    await page.selectOption('#status-filter', 'FAILED');
    assert.equal(await page.locator('#executions tr.execution').count(), 0);
    await page.selectOption('#status-filter', 'SUCCEEDED');
    assert.ok(await page.locator('#executions tr.execution').count() >= 2);
    await page.selectOption('#status-filter', '');
  });

  await step('the execution page shows the path, each state\'s input and output, as text', async () => {
    await page.click(`#executions tr[data-arn="${arn}"] a.execution-link`);
    await page.waitForSelector(`#main[data-view="execution:${arn}"] #timeline`);
    const outcome = (s) => page.getAttribute(`#graph g.node[data-state="${s}"]`, 'data-outcome');
    for (const s of ['Greet', 'Tier', 'Big', 'Done']) assert.equal(await outcome(s), 'succeeded', s);
    assert.equal(await outcome('Small'), null, 'Small was not visited');
    assert.ok(await page.locator('#graph g.edge.taken[data-from="Tier"][data-to="Big"]').count() === 1);
    assert.deepEqual(await page.$$eval('#timeline tr.visit', (rs) => rs.map((r) => r.dataset.state)), ['Greet', 'Tier', 'Big', 'Done']);
    await page.click('#timeline tr.visit[data-state="Greet"]');
    const input = JSON.parse(await page.textContent('#state-detail .state-input'));
    assert.equal(input.name, payload);
    const output = JSON.parse(await page.textContent('#state-detail .state-output'));
    assert.equal(output.greeting, `Hello, ${payload}!`);
    assert.equal(JSON.parse(await page.textContent('#execution-output')).tier, 'gold');
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'no script ran');
    assert.equal(await page.locator('#main img, #main script').count(), 0, 'values are not HTML');
    await page.screenshot({ path: `${shots}/execution-hello.png`, fullPage: true });
  });

  await step('retried, caught and nested states are coloured by outcome', async () => {
    const r = await page.evaluate(async () => {
      const res = await fetch('api/machines/orders/start', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: '{"items":[1,2,3]}', name: 'screenshot' }) });
      return res.json();
    });
    await view('#/execution/' + encodeURIComponent(r.executionArn), 'execution:' + r.executionArn);
    await page.waitForSelector('#timeline tr.visit[data-state="Done"]', { timeout: 20000 });
    const outcome = (s) => page.getAttribute(`#graph g.node[data-state="${s}"]`, 'data-outcome');
    assert.equal(await outcome('Validate'), 'retried');
    assert.equal(await outcome('Charge'), 'caught');
    for (const s of ['Fanout', 'Price', 'Lines', 'Line', 'Refund', 'Done']) assert.equal(await outcome(s), 'succeeded', s);
    assert.equal(await page.locator('#timeline tr.visit[data-state="Line"]').count(), 3, 'one visit per Map item');
    await page.click('#timeline tr.visit[data-state="Charge"]');
    assert.equal(await page.textContent('#state-detail .state-error'), 'CardDeclined');
    assert.equal(await page.textContent('#state-detail .state-cause'), 'insufficient funds');
    await page.click('#graph g.node[data-state="Charge"]');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${shots}/execution-orders.png`, fullPage: true });
    // The README's picture: the top of the page (graph, path, the selected state).
    await page.screenshot({ path: `${shots}/readme-execution.png`, clip: { x: 0, y: 0, width: 1360, height: 860 } });
  });

  const secure = process.env.SECURE_CONSOLE_URL;
  if (secure) {
    await step('expressway gateway --console asks for credentials and shows the same executions with them', async () => {
      const user = process.env.SECURE_USER, password = process.env.SECURE_PASSWORD;
      const basic = (u, p) => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');
      let r = await fetch(secure + 'api/machines');
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') || '', /^Basic /);
      r = await fetch(secure, { headers: { authorization: basic(user, 'wrong') } });
      assert.equal(r.status, 401);
      r = await fetch(secure + 'api/machines/hello/start', { method: 'POST', headers: { authorization: basic(user, password), 'content-type': 'text/plain' }, body: '{"input":"{}"}' });
      assert.equal(r.status, 403, 'a form-encodable (cross-site) POST is refused');
      const text = await (await fetch(secure + 'api/machines', { headers: { authorization: basic(user, password) } })).text();
      assert.ok(!text.includes(password) && !text.includes(brokers), 'no secret or connection parameter in the API');
      const authed = await browser.newContext({ httpCredentials: { username: user, password } });
      const p2 = await authed.newPage();
      await p2.goto(secure + '#/machine/hello');
      await p2.waitForSelector('#main[data-view="machine:hello"]');
      await p2.waitForSelector(`#executions tr[data-arn="${arn}"][data-status="SUCCEEDED"]`, { timeout: 15000 });
      await p2.waitForSelector('#live.on');
      await authed.close();
    });
  }

  await step('the page made no request outside the gateway and logged no errors', async () => {
    assert.deepEqual(external, []);
    assert.deepEqual(failed, []);
    assert.deepEqual(pageErrors, []);
  });
} catch (e) {
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.error('not ok - ' + (e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
if (!process.exitCode) console.log(`console browser test: ${passed} steps passed`);
