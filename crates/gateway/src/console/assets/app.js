// Expressway console. Plain JS, no build step. Every value from the server is put into the
// page as text (textContent / text nodes / attribute values), never parsed as HTML.
'use strict';

const API = 'api/';
const SVG_NS = 'http://www.w3.org/2000/svg';
const STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'UNKNOWN'];

// ---- DOM helpers ------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const main = () => document.getElementById('main');
// replaceChildren without the null/false placeholders of optional parts.
function put(parent, ...children) { parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)); }
function badge(status) { return el('span', { class: 'badge ' + status, 'data-status': status }, status); }
function link(href, text, attrs) { return el('a', Object.assign({ href }, attrs || {}), text); }
function machineHref(name) { return '#/machine/' + encodeURIComponent(name); }
function executionHref(arn) { return '#/execution/' + encodeURIComponent(arn); }
function pretty(value) {
  if (typeof value === 'string') {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch (_) { return value; }
  }
  return JSON.stringify(value, null, 2);
}
function fmtDate(s) { if (!s) return ''; const d = new Date(s); return isNaN(d) ? s : d.toLocaleString(); }
function duration(a, b) {
  if (!a || !b) return '';
  const ms = new Date(b) - new Date(a);
  return isNaN(ms) ? '' : fmtMs(ms);
}
function fmtMs(ms) { return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s'; }
function crumbs(...parts) {
  const nav = document.getElementById('crumbs');
  nav.replaceChildren();
  parts.forEach((p, i) => { if (i) nav.append(el('span', { class: 'sep' }, '/')); nav.append(p); });
}

async function getJSON(path) {
  const r = await fetch(API + path, { headers: { accept: 'application/json' } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error || r.status) + ': ' + (body.message || r.statusText));
  return body;
}

// ---- Live updates -----------------------------------------------------------------------
const live = { listeners: new Set(), source: null };
function connectLive() {
  const badgeEl = document.getElementById('live');
  const src = new EventSource(API + 'events');
  live.source = src;
  src.addEventListener('hello', () => {
    badgeEl.textContent = 'live'; badgeEl.className = 'live on';
    for (const l of live.listeners) l({ resync: true });
  });
  src.addEventListener('resync', () => { for (const l of live.listeners) l({ resync: true }); });
  src.addEventListener('execution', (ev) => {
    let v; try { v = JSON.parse(ev.data); } catch (_) { return; }
    for (const l of live.listeners) l({ execution: v });
  });
  src.onerror = () => { badgeEl.textContent = 'reconnecting'; badgeEl.className = 'live off'; };
}
function onLive(fn) { live.listeners.add(fn); return () => live.listeners.delete(fn); }
let cleanup = [];
function debounce(fn, ms) { let t = null; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }
// Which view is current: route() counts navigations, so a live refresh scheduled (or a fetch
// started) for a view the user has left never renders over the next one.
let currentView = 0;
function viewDebounce(fn, ms) { const mine = currentView; return debounce(() => { if (mine === currentView) fn(); }, ms); }

// ---- Router -----------------------------------------------------------------------------
async function route() {
  currentView += 1;
  cleanup.forEach((f) => f()); cleanup = [];
  const h = location.hash.replace(/^#\/?/, '');
  const [page, ...rest] = h.split('/');
  const arg = rest.length ? decodeURIComponent(rest.join('/')) : '';
  main().removeAttribute('data-view');
  try {
    if (page === 'machine' && arg) await machinePage(arg);
    else if (page === 'execution' && arg) await executionPage(arg);
    else await machinesPage();
    // Which view is rendered (tests wait for it after a hash change).
    main().setAttribute('data-view', page === 'machine' || page === 'execution' ? page + ':' + arg : 'machines');
  } catch (e) {
    main().replaceChildren(el('p', { class: 'error' }, String(e.message || e)));
  }
}

// ---- State machines ---------------------------------------------------------------------
async function machinesPage() {
  crumbs(link('#/', 'State machines'));
  const mine = currentView;
  const render = async () => {
    const data = await getJSON('machines');
    if (mine !== currentView) return;
    const rows = data.machines.map((m) => el('tr', { 'data-machine': m.name },
      el('td', {}, link(machineHref(m.name), m.name, { class: 'machine-link' })),
      el('td', {}, m.source === 'file' ? 'definitions directory' : 'definitions topic'),
      el('td', { class: 'mono' }, m.versions.length ? m.versions.join(', ') : '—'),
      el('td', { class: 'mono' }, m.aliases.length ? m.aliases.join(', ') : '—'),
      el('td', {}, m.logLevel + (m.includeExecutionData ? ' + data' : '')),
      el('td', { class: 'counts' }, Object.keys(m.executions).length
        ? STATUSES.filter((s) => m.executions[s]).map((s) => el('span', { class: 'badge ' + s, 'data-status': s }, s + ' ' + m.executions[s]))
        : el('span', { class: 'muted' }, 'none yet'))));
    put(main(),
      el('h1', {}, 'State machines'),
      data.loaded ? null : el('p', { class: 'notice' }, 'The gateway is still reading the definitions topic.'),
      rows.length
        ? el('table', { id: 'machines' },
          el('thead', {}, el('tr', {}, ['Name', 'Source', 'Versions', 'Aliases', 'Log level', 'Recent executions'].map((t) => el('th', {}, t)))),
          el('tbody', {}, rows))
        : el('p', { class: 'muted' }, 'No state machines yet: put NAME.asl.json files in the definitions directory or create one through the API.'));
  };
  await render();
  const again = viewDebounce(() => render().catch(() => {}), 300);
  cleanup.push(onLive(again));
}

// ---- Graph ------------------------------------------------------------------------------
// Builds a dagre compound graph of a definition: one node per state (ids are state names,
// which ASL keeps unique across the machine), Parallel branches and Map item processors as
// nested clusters, and edges of kinds next / default / choice / catch / branch / end.
function buildGraph(def) {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
  g.setGraph({ rankdir: 'TB', nodesep: 28, ranksep: 36, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  let edgeNo = 0;
  const addEdge = (v, w, kind, label) => {
    if (!g.hasNode(v) || !g.hasNode(w)) return;
    const lbl = label ? String(label).slice(0, 40) : '';
    g.setEdge(v, w, { kind, label: lbl, width: lbl ? lbl.length * 5.6 + 6 : 0, height: lbl ? 14 : 0, labelpos: 'c' }, 'e' + (edgeNo++));
  };
  const measure = (name, type) => ({ width: Math.max(90, Math.min(260, Math.max(name.length, type.length) * 7.4 + 26)), height: type === 'Choice' ? 46 : 40 });
  const clusterNo = { n: 0 };

  function addMachine(d, parent, top) {
    const states = (d && d.States) || {};
    const names = Object.keys(states);
    // Nodes first, so edges can refer to any state of this level.
    for (const name of names) {
      const st = states[name] || {};
      const type = String(st.Type || '?');
      g.setNode(name, Object.assign({ label: name, type, kind: 'state' }, measure(name, type)));
      if (parent) g.setParent(name, parent);
      if (type === 'Parallel' || type === 'Map') {
        const cid = '\u0000cluster' + (clusterNo.n++);
        g.setNode(cid, { kind: 'cluster', label: type === 'Parallel' ? name + ': branches' : name + ': item processor' });
        if (parent) g.setParent(cid, parent);
        const subs = type === 'Parallel' ? (st.Branches || []) : [st.ItemProcessor || st.Iterator || {}];
        subs.forEach((sub, i) => {
          let inner = cid;
          if (type === 'Parallel') {
            inner = '\u0000cluster' + (clusterNo.n++);
            g.setNode(inner, { kind: 'cluster', label: 'branch ' + (i + 1) });
            g.setParent(inner, cid);
          }
          addMachine(sub, inner, false);
          if (sub && sub.StartAt) addEdge(name, sub.StartAt, 'branch', '');
        });
      }
    }
    if (top) {
      g.setNode('\u0000start', { label: 'Start', type: '', kind: 'terminal', width: 70, height: 28 });
      g.setNode('\u0000end', { label: 'End', type: '', kind: 'terminal', width: 70, height: 28 });
      if (d && d.StartAt) addEdge('\u0000start', d.StartAt, 'next', '');
    }
    for (const name of names) {
      const st = states[name] || {};
      if (st.Next) addEdge(name, st.Next, 'next', '');
      if (Array.isArray(st.Choices)) st.Choices.forEach((c, i) => { if (c && c.Next) addEdge(name, c.Next, 'choice', choiceLabel(c, i)); });
      if (st.Default) addEdge(name, st.Default, 'default', 'Default');
      if (Array.isArray(st.Catch)) st.Catch.forEach((c) => { if (c && c.Next) addEdge(name, c.Next, 'catch', 'Catch ' + (c.ErrorEquals || []).join(',')); });
      if (top && (st.End || st.Type === 'Succeed' || st.Type === 'Fail')) addEdge(name, '\u0000end', 'end', '');
    }
  }
  addMachine(def, null, true);
  dagre.layout(g);
  return g;
}
function choiceLabel(c, i) {
  if (typeof c.Condition === 'string') return c.Condition.replace(/^\{%\s*|\s*%\}$/g, '');
  const op = Object.keys(c).find((k) => k !== 'Next' && k !== 'Variable' && k !== 'Assign' && k !== 'Output' && k !== 'Comment');
  if (c.Variable && op) return c.Variable + ' ' + op + ' ' + JSON.stringify(c[op]);
  return 'Choice ' + (i + 1);
}

function drawGraph(g, opts) {
  opts = opts || {};
  const gg = g.graph();
  const root = svg('svg', { width: Math.ceil(gg.width), height: Math.ceil(gg.height), viewBox: `0 0 ${Math.ceil(gg.width)} ${Math.ceil(gg.height)}`, role: 'img', 'aria-label': 'state machine graph' });
  root.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#667085' }))));
  // Clusters, outermost first.
  const clusters = g.nodes().filter((n) => g.node(n).kind === 'cluster');
  const depth = (n) => { let d = 0; for (let p = g.parent(n); p; p = g.parent(p)) d++; return d; };
  clusters.sort((a, b) => depth(a) - depth(b));
  for (const c of clusters) {
    const n = g.node(c);
    root.append(svg('g', { class: 'cluster' },
      svg('rect', { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 8 }),
      svg('text', { x: n.x - n.width / 2 + 8, y: n.y - n.height / 2 + 12 }, n.label)));
  }
  for (const e of g.edges()) {
    const lab = g.edge(e);
    const pts = lab.points || [];
    if (!pts.length) continue;
    const d = 'M' + pts.map((p) => p.x.toFixed(1) + ',' + p.y.toFixed(1)).join(' L');
    const taken = opts.taken && opts.taken.has(e.v + '\u0001' + e.w);
    const grp = svg('g', { class: 'edge kind-' + lab.kind + (taken ? ' taken' : ''), 'data-from': e.v, 'data-to': e.w, 'data-kind': lab.kind },
      svg('path', { d, 'marker-end': 'url(#arrow)' }));
    if (lab.label && typeof lab.x === 'number') grp.append(svg('text', { x: lab.x, y: lab.y + 3, 'text-anchor': 'middle' }, lab.label));
    root.append(grp);
  }
  for (const id of g.nodes()) {
    const n = g.node(id);
    if (!n || n.kind === 'cluster') continue;
    const x = n.x - n.width / 2, y = n.y - n.height / 2;
    const outcome = opts.outcomes ? opts.outcomes.get(id) : undefined;
    let cls = 'node type-' + (n.type || 'none');
    if (n.kind === 'terminal') cls += ' terminal';
    if (outcome) cls += ' outcome-' + outcome;
    else if (opts.outcomes && n.kind === 'state') cls += ' unvisited';
    const grp = svg('g', { class: cls, 'data-state': n.kind === 'state' ? id : null, 'data-type': n.type || null, 'data-outcome': outcome || null });
    if (n.type === 'Choice') {
      const cx = n.x, cy = n.y, hw = n.width / 2, hh = n.height / 2;
      grp.append(svg('polygon', { points: `${cx - hw + 10},${cy - hh} ${cx + hw - 10},${cy - hh} ${cx + hw},${cy} ${cx + hw - 10},${cy + hh} ${cx - hw + 10},${cy + hh} ${cx - hw},${cy}` }));
    } else {
      const rx = n.kind === 'terminal' || n.type === 'Succeed' || n.type === 'Fail' ? n.height / 2 : 6;
      grp.append(svg('rect', { x, y, width: n.width, height: n.height, rx }));
    }
    if (n.kind === 'terminal') {
      grp.append(svg('text', { x: n.x, y: n.y }, n.label));
    } else {
      grp.append(svg('text', { x: n.x, y: n.y - 7 }, n.label));
      grp.append(svg('text', { class: 'type', x: n.x, y: n.y + 9 }, n.type));
    }
    if (opts.onClick && n.kind === 'state') {
      grp.classList.add('clickable');
      grp.addEventListener('click', () => opts.onClick(id));
    }
    grp.append(svg('title', {}, n.kind === 'state' ? `${n.label} (${n.type})${outcome ? ': ' + outcome : ''}` : n.label));
    root.append(grp);
  }
  return root;
}
function legend(withOutcomes) {
  const items = withOutcomes
    ? ['succeeded', 'failed', 'caught', 'retried', 'running'].map((o) => el('span', { class: 'badge ' + o }, o)).concat([el('span', {}, 'faded: not visited')])
    : [el('span', {}, '── Next'), el('span', {}, '- - Default'), el('span', { class: 'error' }, '··· Catch'), el('span', {}, 'blue dashed: branch / item processor')];
  return el('div', { class: 'legend' }, items);
}

// ---- A machine --------------------------------------------------------------------------
async function machinePage(name) {
  const m = await getJSON('machines/' + encodeURIComponent(name));
  crumbs(link('#/', 'State machines'), link(machineHref(name), name));
  const state = { filter: '', rows: new Map(), held: 0 };
  let graphBox;
  try {
    graphBox = el('div', { class: 'graph', id: 'graph' }, drawGraph(buildGraph(m.definition)));
  } catch (e) {
    graphBox = el('p', { class: 'error' }, 'Cannot draw the graph: ' + e.message);
  }
  const tbody = el('tbody', {});
  const filter = el('select', { id: 'status-filter', onchange: () => { state.filter = filter.value; renderRows(); } },
    el('option', { value: '' }, 'all statuses'), STATUSES.map((s) => el('option', { value: s }, s)));
  const renderRows = () => {
    const list = [...state.rows.values()]
      .filter((e) => !state.filter || e.status === state.filter)
      .sort((a, b) => (b.startDate || '').localeCompare(a.startDate || '') || (b.seq || 0) - (a.seq || 0));
    tbody.replaceChildren(...(list.length ? list.map((e) => el('tr', { 'data-arn': e.executionArn, 'data-status': e.status, class: 'execution' },
      el('td', { class: 'mono' }, link(executionHref(e.executionArn), e.name, { class: 'execution-link' })),
      el('td', {}, badge(e.status)),
      el('td', {}, fmtDate(e.startDate)),
      el('td', {}, duration(e.startDate, e.stopDate)),
      el('td', { class: 'mono' }, e.error ? e.error + (e.cause ? ': ' + e.cause.slice(0, 120) : '') : ''))) :
      [el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No executions held for this machine' + (state.filter ? ' with status ' + state.filter : '') + '. Start one below or with expressway start.'))]));
  };
  const load = async () => {
    const data = await getJSON('machines/' + encodeURIComponent(name) + '/executions');
    state.rows = new Map(data.executions.map((e) => [e.executionArn, e]));
    state.held = data.held;
    renderRows();
  };
  const input = el('textarea', { id: 'start-input', spellcheck: 'false', 'aria-label': 'execution input (JSON)' }, '{}');
  const nameInput = el('input', { type: 'text', id: 'start-name', placeholder: 'name (optional)' });
  const startMsg = el('div', { id: 'start-message' });
  const startBtn = el('button', { class: 'primary', id: 'start-button', type: 'button' }, 'Start execution');
  const validate = () => {
    try {
      JSON.parse(input.value);
      input.classList.remove('invalid');
      const err = startMsg.querySelector('.invalid-json');
      if (err) err.remove();
      return true;
    } catch (e) {
      input.classList.add('invalid');
      startMsg.replaceChildren(el('span', { class: 'error invalid-json', id: 'start-error' }, 'Input is not valid JSON: ' + e.message));
      return false;
    }
  };
  input.addEventListener('input', debounce(validate, 250));
  startBtn.addEventListener('click', async () => {
    if (!validate()) return;
    startBtn.disabled = true;
    try {
      const r = await fetch(API + 'machines/' + encodeURIComponent(name) + '/start', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: input.value, name: nameInput.value || undefined }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        startMsg.replaceChildren(el('span', { class: 'error', id: 'start-error' }, (body.__type || body.error || r.status) + ': ' + (body.message || '')));
      } else {
        startMsg.replaceChildren('Started ', link(executionHref(body.executionArn), body.executionArn, { id: 'started-link', class: 'mono' }));
        if (!state.rows.has(body.executionArn)) load().catch(() => {});
      }
    } catch (e) {
      startMsg.replaceChildren(el('span', { class: 'error' }, String(e)));
    } finally { startBtn.disabled = false; }
  });
  const logNote = m.logging.level === 'ALL' && m.logging.includeExecutionData ? null
    : el('p', { class: 'notice' }, `This machine logs at level ${m.logging.level}` + (m.logging.includeExecutionData ? '' : ' without execution data') +
      ': execution pages show ' + (m.logging.level === 'OFF' ? 'no states' : 'only the events logged') + (m.logging.includeExecutionData ? '' : ' and no inputs or outputs') + '. Set loggingConfiguration {"level":"ALL","includeExecutionData":true} to see each state.');
  put(main(),
    el('h1', {}, name),
    el('dl', { class: 'kv card' },
      el('dt', {}, 'ARN'), el('dd', { class: 'mono' }, m.arn),
      el('dt', {}, 'Source'), el('dd', {}, m.source === 'file' ? 'definitions directory (read-only)' : 'definitions topic'),
      el('dt', {}, 'Logging'), el('dd', {}, m.logging.level + (m.logging.includeExecutionData ? ', with execution data' : ', without execution data')),
      el('dt', {}, 'Versions'), el('dd', {}, m.versions.length ? m.versions.join(', ') : 'none'),
      el('dt', {}, 'Aliases'), el('dd', {}, m.aliases.length ? m.aliases.map((a) => a.name + ' → ' + a.routes.map((r) => 'v' + r.version + ' ' + r.weight + '%').join(', ')).join('; ') : 'none')),
    logNote,
    el('div', { class: 'grid' },
      el('section', {}, el('h2', {}, 'Graph'), legend(false), graphBox),
      el('section', {}, el('h2', {}, 'Definition'), el('pre', { id: 'definition' }, pretty(m.definitionText)))),
    el('h2', {}, 'Start execution'),
    el('div', { class: 'card' }, input, el('div', { class: 'toolbar' }, nameInput, startBtn), startMsg),
    el('h2', {}, 'Executions'),
    el('div', { class: 'toolbar' }, filter, el('span', { class: 'muted' }, 'newest first, live; the console keeps the most recent executions per machine')),
    el('table', { id: 'executions' }, el('thead', {}, el('tr', {}, ['Name', 'Status', 'Started', 'Duration', 'Error'].map((t) => el('th', {}, t)))), tbody));
  await load();
  const resync = viewDebounce(() => load().catch(() => {}), 200);
  cleanup.push(onLive((u) => {
    if (u.resync) return resync();
    const e = u.execution;
    if (!e || e.stateMachine !== name) return;
    state.rows.set(e.executionArn, e);
    if (state.held && state.rows.size > state.held) {
      const oldest = [...state.rows.values()].sort((a, b) => (a.seq || 0) - (b.seq || 0))[0];
      state.rows.delete(oldest.executionArn);
    }
    renderRows();
  }));
}

// ---- An execution -----------------------------------------------------------------------
// Turns the log record's events into state visits: entered/exited pairs by state name, the
// task-level events in between linked to their visit through previous_event_id.
function visitsOf(events, executionStatus) {
  const visits = [];
  const taken = new Set();
  const open = new Map();
  const byEvent = new Map();
  const ts = (e) => Number(e.event_timestamp);
  const lastOpen = (types) => { for (let i = visits.length - 1; i >= 0; i--) if (visits[i].exited === undefined && types.includes(visits[i].type)) return visits[i]; };
  for (const ev of events) {
    const t = String(ev.type || '');
    const d = ev.details || {};
    const prev = byEvent.get(String(ev.previous_event_id));
    let visit;
    if (t.endsWith('StateEntered') && d.name !== undefined) {
      visit = { name: d.name, type: t.replace('StateEntered', ''), entered: ts(ev), input: d.input, failures: 0, lastOk: true };
      visits.push(visit);
      // The edge taken: from the state this event follows (same branch or iteration).
      taken.add((prev ? prev.name : '\u0000start') + '\u0001' + d.name);
      if (!open.has(d.name)) open.set(d.name, []);
      open.get(d.name).push(visit);
    } else if (t.endsWith('StateExited') && d.name !== undefined) {
      const stack = open.get(d.name);
      visit = stack && stack.pop();
      if (visit) { visit.exited = ts(ev); visit.output = d.output; }
    } else if (t === 'MapStateFailed' || t === 'ParallelStateFailed') {
      visit = lastOpen(t === 'MapStateFailed' ? ['Map'] : ['Parallel']);
      if (visit) { visit.failures++; visit.lastOk = false; visit.error = d.error; visit.cause = d.cause; }
    } else {
      visit = prev;
      if (visit && visit.type === 'Task' && !t.startsWith('Execution')) {
        if (/(Failed|TimedOut)$/.test(t)) { visit.failures++; visit.lastOk = false; visit.error = d.error; visit.cause = d.cause; }
        else if (/Succeeded$/.test(t)) visit.lastOk = true;
      }
    }
    if (visit) byEvent.set(String(ev.id), visit);
  }
  const failedRun = executionStatus === 'FAILED' || executionStatus === 'TIMED_OUT';
  for (const v of visits) {
    if (v.exited === undefined) v.outcome = failedRun ? 'failed' : 'running';
    else if (v.failures === 0) v.outcome = 'succeeded';
    else v.outcome = v.lastOk ? 'retried' : 'caught';
  }
  return { visits, taken };
}
const RANK = { failed: 5, caught: 4, retried: 3, running: 2, succeeded: 1 };

async function executionPage(arn) {
  const box = el('div', {});
  main().replaceChildren(box);
  let selected = null;
  let machineDef = null;
  const mine = currentView;
  const render = async () => {
    const x = await getJSON('execution?arn=' + encodeURIComponent(arn));
    if (mine !== currentView) return;
    if (!machineDef) machineDef = await getJSON('machines/' + encodeURIComponent(x.stateMachine)).catch(() => null);
    crumbs(link('#/', 'State machines'), link(machineHref(x.stateMachine), x.stateMachine), link(executionHref(arn), x.name));
    const events = x.events || [];
    const { visits, taken } = visitsOf(events, x.status);
    const outcomes = new Map();
    for (const v of visits) if (!outcomes.has(v.name) || RANK[v.outcome] > RANK[outcomes.get(v.name)]) outcomes.set(v.name, v.outcome);
    const detail = el('div', { id: 'state-detail' });
    const showVisit = (v) => {
      selected = v ? v.name + '#' + visits.indexOf(v) : null;
      for (const r of box.querySelectorAll('tr.visit')) r.classList.toggle('selected', r.dataset.key === selected);
      if (!v) { detail.replaceChildren(el('p', { class: 'muted' }, 'Select a state in the graph or the timeline.')); return; }
      const noData = x.logging && !x.logging.includeExecutionData;
      put(detail,
        el('h2', {}, v.name + ' ', badge(v.outcome)),
        el('dl', { class: 'kv' },
          el('dt', {}, 'Type'), el('dd', {}, v.type),
          el('dt', {}, 'Duration'), el('dd', {}, v.exited !== undefined ? fmtMs(v.exited - v.entered) : '—'),
          v.failures ? [el('dt', {}, 'Failed attempts'), el('dd', {}, String(v.failures))] : null,
          v.error !== undefined ? [el('dt', {}, 'Error'), el('dd', { class: 'mono state-error' }, String(v.error))] : null,
          v.cause !== undefined ? [el('dt', {}, 'Cause'), el('dd', { class: 'mono state-cause' }, String(v.cause))] : null),
        el('h2', {}, 'Input'), v.input !== undefined ? el('pre', { class: 'state-input' }, pretty(v.input)) : el('p', { class: 'muted' }, noData ? 'not logged (includeExecutionData is false)' : 'not logged'),
        el('h2', {}, 'Output'), v.output !== undefined ? el('pre', { class: 'state-output' }, pretty(v.output)) : el('p', { class: 'muted' }, v.exited === undefined ? 'the state did not exit' : (noData ? 'not logged (includeExecutionData is false)' : 'not logged')));
    };
    const findVisit = (name) => visits.filter((v) => v.name === name).pop();
    let graph = el('p', { class: 'muted' }, 'Definition not available.');
    if (machineDef) {
      try { graph = el('div', { class: 'graph', id: 'graph' }, drawGraph(buildGraph(machineDef.definition), { outcomes, taken, onClick: (n) => showVisit(findVisit(n)) })); } catch (e) { graph = el('p', { class: 'error' }, 'Cannot draw the graph: ' + e.message); }
    }
    const t0 = visits.length ? Math.min(...visits.map((v) => v.entered)) : 0;
    const tEnd = visits.length ? Math.max(...visits.map((v) => v.exited !== undefined ? v.exited : v.entered)) : 0;
    const span = Math.max(1, tEnd - t0);
    const timeline = el('table', { class: 'timeline', id: 'timeline' },
      el('thead', {}, el('tr', {}, ['State', 'Type', 'Outcome', 'Duration', 'Timeline'].map((h) => el('th', {}, h)))),
      el('tbody', {}, visits.map((v, i) => {
        const end = v.exited !== undefined ? v.exited : v.entered;
        const left = ((v.entered - t0) / span) * 100, width = ((end - v.entered) / span) * 100;
        const fill = el('div', { class: 'barfill ' + v.outcome });
        fill.style.left = left.toFixed(2) + '%'; fill.style.width = width.toFixed(2) + '%';
        const row = el('tr', { class: 'visit', 'data-state': v.name, 'data-outcome': v.outcome, 'data-key': v.name + '#' + i },
          el('td', {}, v.name), el('td', {}, v.type), el('td', {}, badge(v.outcome)),
          el('td', {}, v.exited !== undefined ? fmtMs(v.exited - v.entered) : '—'),
          el('td', { class: 'bar' }, el('div', { class: 'barwrap' }, fill)));
        row.addEventListener('click', () => showVisit(v));
        return row;
      })));
    let note = null;
    if (!x.hasLogRecord) note = el('p', { class: 'notice', id: 'log-note' }, x.status === 'RUNNING' ? 'Running: the states appear when the execution finishes and its log record arrives.' : 'No log record for this execution (yet).');
    else if (x.eventsDropped) note = el('p', { class: 'notice', id: 'log-note' }, 'Events not shown: ' + x.eventsDropped + '.');
    else if (x.logging && (x.logging.level !== 'ALL' || !x.logging.includeExecutionData)) note = el('p', { class: 'notice', id: 'log-note' }, `This machine logs at level ${x.logging.level}` + (x.logging.includeExecutionData ? '' : ' without execution data') + ': only the logged events are shown' + (x.logging.includeExecutionData ? '' : ', without inputs and outputs') + '.');
    const execFailed = events.find((e) => e.type === 'ExecutionFailed' || e.type === 'ExecutionTimedOut');
    put(box,
      el('h1', {}, x.name + ' ', badge(x.status)),
      el('dl', { class: 'kv card' },
        el('dt', {}, 'Execution ARN'), el('dd', { class: 'mono' }, x.executionArn),
        el('dt', {}, 'State machine'), el('dd', {}, link(machineHref(x.stateMachine), x.stateMachineArn || x.stateMachine)),
        el('dt', {}, 'Started'), el('dd', {}, fmtDate(x.startDate)),
        el('dt', {}, 'Stopped'), el('dd', {}, fmtDate(x.stopDate) || '—'),
        el('dt', {}, 'Duration'), el('dd', {}, duration(x.startDate, x.stopDate) || '—'),
        x.error !== undefined ? [el('dt', {}, 'Error'), el('dd', { class: 'mono', id: 'execution-error' }, x.error)] : null,
        x.cause !== undefined ? [el('dt', {}, 'Cause'), el('dd', { class: 'mono' }, x.cause)] : null,
        !x.error && execFailed && execFailed.details ? [el('dt', {}, 'Error'), el('dd', { class: 'mono' }, String(execFailed.details.error || ''))] : null),
      note,
      el('div', { class: 'grid' },
        el('section', {}, el('h2', {}, 'Path'), legend(true), graph),
        el('section', {}, el('div', { class: 'card' }, detail))),
      el('h2', {}, 'States'), visits.length ? timeline : el('p', { class: 'muted' }, 'No state events.'),
      el('div', { class: 'grid' },
        el('section', {}, el('h2', {}, 'Execution input'), x.input !== undefined ? el('pre', { id: 'execution-input' }, pretty(x.input)) : (visits[0] && visits[0].input !== undefined ? el('pre', { id: 'execution-input' }, pretty(visits[0].input)) : el('p', { class: 'muted' }, 'not known'))),
        el('section', {}, el('h2', {}, 'Execution output'), x.output !== undefined ? el('pre', { id: 'execution-output' }, pretty(x.output)) : el('p', { class: 'muted' }, '—'))));
    const again = selected && visits.find((v, i) => v.name + '#' + i === selected);
    showVisit(again || visits.find((v) => v.outcome === 'failed' || v.outcome === 'caught') || visits[visits.length - 1]);
  };
  await render();
  const again = viewDebounce(() => render().catch(() => {}), 200);
  cleanup.push(onLive((u) => { if (u.resync || (u.execution && u.execution.executionArn === arn)) again(); }));
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => { connectLive(); route(); });
