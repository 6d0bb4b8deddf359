// The dashboard's script: routing by URL fragment, one render function per page, live
// updates over one EventSource, and the action buttons. Plain ES2020, no build step: the
// binary embeds this file as is, and the page must work offline.
//
// Rendering builds one HTML string per page and swaps the main region in one go: the runs
// table may hold a thousand rows, and one innerHTML is far cheaper than a thousand DOM
// calls. Every value from the cluster goes through esc(). Events are delegated from the
// document, so no row carries its own listener and re-renders leak nothing.
'use strict';

const PAGES = ['now', 'runs', 'calendar', 'releases', 'backups'];
const COMMON_ZONES = ['Europe/London', 'Europe/Berlin', 'America/New_York', 'America/Chicago',
  'America/Los_Angeles', 'Asia/Kolkata', 'Asia/Tokyo', 'Australia/Sydney'];
// Phase → [css class, icon]: the icon and the text say what the colour says.
const PHASES = {
  Succeeded: ['ok', '✓'], Verified: ['ok', '✓'], Healthy: ['ok', '✓'], Promoted: ['ok', '✓'],
  Ready: ['ok', '✓'], Completed: ['ok', '✓'], Fresh: ['ok', '✓'], DriftRespected: ['ok', '✓'],
  Failed: ['bad', '✗'], PreflightFailed: ['bad', '✗'], Degraded: ['bad', '✗'], Error: ['bad', '✗'],
  Aborted: ['bad', '✗'], Rejected: ['bad', '✗'], Stale: ['bad', '✗'], TimedOut: ['bad', '✗'],
  Running: ['run', '▶'], Progressing: ['run', '▶'], Validating: ['run', '▶'], Open: ['run', '▶'],
  Active: ['run', '▶'], Promoting: ['run', '▶'], Deploying: ['run', '▶'],
  WaitingForApproval: ['wait', '‖'], Paused: ['wait', '‖'], AwaitingPromotion: ['wait', '‖'],
  Pending: ['idle', '○'], Scheduled: ['idle', '○'], Skipped: ['idle', '–'],
  Cancelled: ['idle', '⊘'], Canceled: ['idle', '⊘'], Closed: ['idle', '○'],
};
// Actions that undo or stop something take two clicks (no confirm(): it blocks WebDriver).
const TWO_CLICK = { reject: 'Confirm reject', abort: 'Confirm abort', cancel: 'Confirm cancel' };

const state = {
  ctx: null, // /api/context
  route: null, // {ns, page, name, query}
  es: null, // the EventSource
  esNs: null,
  renders: 0,
  seq: 0, // the newest refresh; an older answer arriving late is dropped
  timer: null,
  confirm: null, // the key of a two-click button waiting for its second click
  busy: new Set(), // keys of buttons whose request is in flight
};

const $ = (sel, root = document) => root.querySelector(sel);

/** HTML-escapes any value (null and undefined become ''). */
function esc(v) {
  if (v === null || v === undefined) return '';
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
const enc = encodeURIComponent;

// ---------------------------------------------------------------- routing

/** `#/<ns>/<page>[/<name>][?query]` → route; null when the fragment is not a page. */
function parseHash() {
  const h = location.hash.replace(/^#/, '');
  const [path, qs] = h.split('?', 2);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length < 2 || !PAGES.includes(parts[1])) return null;
  return { ns: parts[0], page: parts[1], name: parts[2] || null, query: new URLSearchParams(qs || '') };
}

function hashFor(ns, page, name, query) {
  let h = `#/${enc(ns)}/${page}`;
  if (name) h += `/${enc(name)}`;
  const q = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v)).toString() : '';
  return q ? `${h}?${q}` : h;
}
const link = (page, name, query) => hashFor(state.route.ns, page, name, query);

// ---------------------------------------------------------------- formatting

const ZONE_FMT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
});
const RTF = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** Absolute time in the browser's zone, with the zone's abbreviation. */
function absTime(ts) {
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : ZONE_FMT.format(d);
}

/** "12 min ago" / "in 3 h": relative to now, rounded to the coarsest useful unit. */
function relTime(ts) {
  const s = (new Date(ts).getTime() - Date.now()) / 1000;
  const a = Math.abs(s);
  if (a < 45) return s < 0 ? 'just now' : 'in a few seconds';
  if (a < 3600) return RTF.format(Math.round(s / 60), 'minute');
  if (a < 86400 * 2) return RTF.format(Math.round(s / 3600), 'hour');
  return RTF.format(Math.round(s / 86400), 'day');
}

/** A `<time>` showing the relative time, the absolute one on hover. */
function when(ts) {
  if (!ts) return '<span class="muted">—</span>';
  return `<time datetime="${esc(ts)}" title="${esc(absTime(ts))}">${esc(relTime(ts))}</time>`;
}
/** A `<time>` showing the absolute time. */
function at(ts) {
  if (!ts) return '<span class="muted">—</span>';
  return `<time datetime="${esc(ts)}" title="${esc(relTime(ts))}">${esc(absTime(ts))}</time>`;
}

// Calendar dates are civil dates: formatted in UTC so the browser's zone cannot shift them.
const WEEKDAY = new Intl.DateTimeFormat(undefined, { weekday: 'short', timeZone: 'UTC' });
const DAY_MONTH = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', timeZone: 'UTC' });
const civil = (ymd) => new Date(`${ymd}T00:00:00Z`);

/** Seconds → "2d 4h", "5h", "3m 20s". */
function dur(sec) {
  if (sec === null || sec === undefined || !isFinite(sec)) return '—';
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400), h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60), s = sec % 60;
  if (d) return h ? `${d}d ${h}h` : `${d}d`;
  if (h) return m ? `${h}h ${m}m` : `${h}h`;
  if (m) return s ? `${m}m ${s}s` : `${m}m`;
  return `${s}s`;
}
function span(from, to) {
  if (!from) return '—';
  const end = to ? new Date(to) : new Date();
  return dur((end - new Date(from)) / 1000);
}

/** A phase badge: colour, icon and text, so colour is never the only signal. */
function badge(phase, attrs = '') {
  const [cls, icon] = PHASES[phase] || ['idle', '•'];
  return `<span class="badge ${cls}"${attrs}><span class="icon" aria-hidden="true">${icon}</span> ${esc(phase || 'Unknown')}</span>`;
}
const phaseClass = (phase) => (PHASES[phase] || ['idle'])[0];

function empty(text) {
  return `<p class="empty">${esc(text)}</p>`;
}

function table(headers, rows, attrs = '') {
  return `<table${attrs}><thead><tr>${headers.map((h) => `<th scope="col">${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function conditionsTable(conds) {
  if (!conds || !conds.length) return empty('No conditions reported.');
  return table(['Type', 'Status', 'Reason', 'Message', 'Since'], conds.map((c) =>
    `<tr><th scope="row">${esc(c.type)}</th><td><span class="cond cond-${esc(c.status)}">${esc(c.status)}</span></td><td>${esc(c.reason)}</td><td>${esc(c.message)}</td><td>${when(c.lastTransition)}</td></tr>`));
}

// ---------------------------------------------------------------- buttons

/** A button that acts; `data` becomes its data-* attributes (they also say what it posts). */
function actionButton(action, label, data, cls = '') {
  const attrs = Object.entries(data).map(([k, v]) => ` data-${k}="${esc(v)}"`).join('');
  return `<button type="button" class="act ${cls}" data-action="${action}"${attrs} data-label="${esc(label)}">${esc(label)}</button>`;
}
/** The identity of a button across re-renders (for focus, confirmation and busy state). */
function buttonKey(b) {
  return ['action', 'run', 'step', 'release', 'revision', 'policy'].map((k) => b.dataset[k] || '').join('|');
}

// ---------------------------------------------------------------- pages

function renderNow(v) {
  const p = v.permissions || {};
  const section = (id, title, items, none, row) => `<section id="${id}" class="now-sec" aria-labelledby="${id}-h">
    <h2 id="${id}-h">${esc(title)} <span class="count" aria-label="${items.length} items">${items.length}</span></h2>
    ${items.length ? `<ul class="items">${items.map(row).join('')}</ul>` : empty(none)}</section>`;
  const nowMs = Date.now();
  return `<h1 class="vh">Now</h1><div class="now-grid">
  ${section('now-waiting', 'Waiting for approval', v.waiting, 'Nothing waits for approval.', (w) => `<li data-run="${esc(w.run.name)}" class="item">
      <div class="item-main"><a href="${link('runs', w.run.name)}">${esc(w.run.name)}</a>
        <span class="muted">runbook ${esc(w.run.runbook)} · step <b>${esc(w.step)}</b> · waiting since ${when(w.since)}</span>
        ${w.message ? `<p class="ask">${esc(w.message)}</p>` : ''}</div>
      ${p.approve ? `<div class="btns">${actionButton('approve', 'Approve', { run: w.run.name, step: w.step }, 'primary')}${actionButton('reject', 'Reject', { run: w.run.name, step: w.step }, 'danger')}</div>` : ''}
    </li>`)}
  ${section('now-failed', 'Failed in the last 24 h', v.failed, 'No run failed in the last 24 hours.', (r) => `<li data-run="${esc(r.name)}" class="item">
      <div class="item-main"><a href="${link('runs', r.name)}">${esc(r.name)}</a> ${badge(r.phase)}
        <span class="muted">runbook ${esc(r.runbook)} · ${esc(r.trigger)} · finished ${when(r.finished)}</span>
        ${r.message ? `<p class="ask">${esc(r.message)}</p>` : ''}</div></li>`)}
  ${section('now-windows', 'Windows in the next 24 h', v.windows, 'No maintenance window opens in the next 24 hours.', (w) => {
    const open = new Date(w.start).getTime() <= nowMs;
    return `<li data-window="${esc(w.name)}" class="item">
      <div class="item-main"><a href="${link('calendar', null, { date: w.localStart.slice(0, 10) })}">${esc(w.name)}</a>
        ${open ? badge('Open') : `<span class="muted">opens ${when(w.start)}</span>`}
        <span class="muted">${esc(w.localStart)} – ${esc(w.localEnd)} ${esc(w.timeZone)}</span></div></li>`;
  })}
  ${section('now-releases', 'Releases that need a look', v.releases, 'Every release is healthy.', (r) => `<li data-release="${esc(r.name)}" class="item">
      <div class="item-main"><a href="${link('releases', null, { focus: r.name })}">${esc(r.name)}</a> ${badge(r.phase)}
        <p class="ask">${esc(r.reason)}</p></div></li>`)}
  ${section('now-backups', 'Backups out of RPO', v.backups, 'Every backup policy is within its RPO.', (r) => `<li data-policy="${esc(r.name)}" class="item">
      <div class="item-main"><a href="${link('backups', null, { focus: r.name })}">${esc(r.name)}</a> ${badge(r.phase)}
        <p class="ask">${esc(r.reason)}</p></div></li>`)}
  </div>`;
}

/** A filter's values plus the one the fragment asks for, so the select never lies about it. */
function withCurrent(values, current) {
  return current && !values.includes(current) ? [...values, current] : values;
}

function renderRuns(v, q) {
  const sel = (id, label, key, values) => `<label>${label}
    <select id="${id}" data-filter="${key}"><option value="">Any</option>${withCurrent(values, q.get(key)).map((x) =>
      `<option${x === q.get(key) ? ' selected' : ''}>${esc(x)}</option>`).join('')}</select></label>`;
  const rows = v.runs.map((r) => `<tr data-run="${esc(r.name)}" data-phase="${esc(r.phase)}">
<th scope="row"><a href="${link('runs', r.name)}">${esc(r.name)}</a>${r.plan ? ' <span class="tag">plan</span>' : ''}</th>
<td>${esc(r.runbook)}</td><td>${badge(r.phase)}</td><td>${esc(r.trigger)}</td>
<td class="num">${r.stepsDone}/${r.stepsTotal}${r.currentStep ? ` <span class="muted">${esc(r.currentStep)}</span>` : ''}</td>
<td>${when(r.started || r.created)}</td><td class="num">${r.started ? span(r.started, r.finished) : '—'}</td></tr>`);
  return `<h1>Runs <span class="muted small">${v.runs.length} of ${v.total}</span></h1>
  <div class="filters" role="group" aria-label="Filter runs">
    ${sel('filter-runbook', 'Runbook', 'runbook', v.runbooks)}
    ${sel('filter-phase', 'Phase', 'phase', v.phases)}
    ${sel('filter-trigger', 'Trigger', 'trigger', v.triggers)}
  </div>
  ${v.runs.length ? table(['Run', 'Runbook', 'Phase', 'Trigger', 'Progress', 'Started', 'Duration'], rows, ' id="runs" class="list"')
    : `<table id="runs" class="list"><tbody></tbody></table>${empty(v.total ? 'No run matches these filters.' : 'This namespace has no runs yet.')}`}`;
}

function renderRun(v) {
  const r = v.run, a = v.actions || {};
  const btns = [];
  if (a.approve && v.waitingStep) btns.push(actionButton('approve', 'Approve', { run: r.name, step: v.waitingStep }, 'primary'));
  if (a.reject && v.waitingStep) btns.push(actionButton('reject', 'Reject', { run: r.name, step: v.waitingStep }, 'danger'));
  if (a.cancel) btns.push(actionButton('cancel', 'Cancel run', { run: r.name }, 'danger'));
  if (a.rerun) btns.push(actionButton('rerun', 'Run again', { run: r.name }));
  const params = Object.entries(v.params || {});
  const withOutputs = v.steps.filter((s) => s.outputs && Object.keys(s.outputs).length);
  return `<nav class="crumbs" aria-label="Breadcrumb"><a href="${link('runs')}">Runs</a> ›</nav>
  <div class="run-head"><h1>${esc(r.name)}</h1>
    <span class="badge ${phaseClass(r.phase)}"><span class="icon" aria-hidden="true">${(PHASES[r.phase] || ['', '•'])[1]}</span> <span id="run-phase">${esc(r.phase)}</span></span>
    ${r.plan ? '<span class="tag">plan mode</span>' : ''}
    <div class="btns">${btns.join('')}</div></div>
  <p class="muted">Runbook <b>${esc(r.runbook)}</b> · trigger ${esc(r.trigger)} · ${r.stepsDone}/${r.stepsTotal} steps ·
    started ${when(r.started || r.created)}${r.finished ? ` · finished ${when(r.finished)} after ${span(r.started, r.finished)}` : ''}</p>
  ${v.waitingStep ? `<p class="note wait">Waits for approval at step <b>${esc(v.waitingStep)}</b>${waitMsg(v) ? `: ${esc(waitMsg(v))}` : ''}</p>` : ''}
  ${r.message ? `<p class="note ${phaseClass(r.phase)}">${esc(r.message)}</p>` : ''}
  ${params.length ? `<details class="params" open><summary>Parameters (${params.length})</summary><dl>${params.map(([k, val]) => `<dt>${esc(k)}</dt><dd><code>${esc(val)}</code></dd>`).join('')}</dl></details>` : ''}
  <section aria-labelledby="tl-h"><h2 id="tl-h">Timeline</h2>${timeline(v)}</section>
  <section id="outputs" aria-labelledby="out-h"><h2 id="out-h">Outputs</h2>
      ${withOutputs.length ? table(['Step', 'Output', 'Value'], withOutputs.flatMap((s) => Object.entries(s.outputs).map(([k, val], i) =>
      `<tr data-step="${esc(s.name)}">${i ? '<td></td>' : `<th scope="row">${esc(s.name)}</th>`}<td>${esc(k)}</td><td><code>${esc(val)}</code></td></tr>`)), ' class="list kv"') : empty('No step has outputs yet.')}
  </section>
  <section aria-labelledby="cond-h"><h2 id="cond-h">Conditions</h2>${conditionsTable(v.conditions)}</section>
  <section aria-labelledby="ev-h"><h2 id="ev-h">Events</h2>
    ${table(['When', 'Type', 'Reason', 'Message', 'Count'], v.events.map((e) => `<tr class="${e.kind === 'Warning' ? 'warn' : ''}">
      <td>${when(e.time)}</td><td>${e.kind === 'Warning' ? '⚠ ' : ''}${esc(e.kind)}</td><td>${esc(e.reason)}</td><td>${esc(e.message)}</td><td class="num">${e.count}</td></tr>`), ' id="events" class="list"')}
    ${v.events.length ? '' : empty('No events (the API server keeps them for about an hour).')}
  </section>`;
}

/** What the approval step a run waits at asks. */
function waitMsg(v) {
  const s = v.steps.find((x) => x.name === v.waitingStep);
  return s && s.message;
}

/** The Gantt-like timeline: one row per step, the bar placed by the view's percentages. */
function timeline(v) {
  const rows = v.steps.map((s) => {
    const [cls, icon] = PHASES[s.phase] || ['idle', '•'];
    const bar = s.offsetPct === null || s.offsetPct === undefined ? '<span class="not-reached">not reached</span>'
      : `<div class="bar ${cls}" data-offset="${Number(s.offsetPct)}" data-width="${Number(s.widthPct || 0.5)}" title="${esc(s.name)}: ${esc(s.phase)}${s.started ? `, ${esc(absTime(s.started))}` : ''}${s.finished ? ` – ${esc(absTime(s.finished))}` : ''}"></div>`;
    const detail = [s.reason, s.message].filter(Boolean).join(': ');
    return `<div class="tl-row${s.finally ? ' finally' : ''}" data-step="${esc(s.name)}" data-phase="${esc(s.phase)}" role="row">
      <div class="tl-name" role="rowheader"><b>${esc(s.name)}</b> <span class="muted">${esc(s.action)}</span>${s.finally ? ' <span class="tag">finally</span>' : ''}${s.condition ? ` <span class="tag" title="when: ${esc(s.condition)}">when</span>` : ''}</div>
      <div class="tl-track" role="cell">${bar}</div>
      <div class="tl-state" role="cell"><span class="badge ${cls}"><span class="icon" aria-hidden="true">${icon}</span> ${esc(s.phase)}</span>${s.attempts > 1 ? ` <span class="attempts" title="${s.attempts} attempts">×${s.attempts}</span>` : ''}
        <span class="muted">${s.started ? span(s.started, s.finished) : ''}</span>${detail ? `<div class="tl-msg">${esc(detail)}</div>` : ''}</div></div>`;
  });
  const axis = v.axisStart ? `<div class="tl-axis" aria-hidden="true"><span></span><span class="axis-line"><span>${esc(absTime(v.axisStart))}</span><span>${esc(absTime(v.axisEnd))}</span></span><span></span></div>` : '';
  return `<div id="timeline" class="timeline" role="table" aria-label="Steps on the run's time axis">${rows.join('')}${axis}</div>${v.steps.length ? '' : empty('No steps resolved yet.')}`;
}

function renderCalendar(c, q) {
  const zones = ['UTC', ...new Set([...c.windows.map((w) => w.timeZone), ...COMMON_ZONES, Intl.DateTimeFormat().resolvedOptions().timeZone])]
    .filter((z, i, all) => z && all.indexOf(z) === i);
  if (c.zone !== 'own' && !zones.includes(c.zone)) zones.push(c.zone);
  const opt = (val, label) => `<option value="${esc(val)}"${val === c.zone ? ' selected' : ''}>${esc(label)}</option>`;
  const week = c.span === 'week';
  // Headers from the dates themselves: the 7-day view starts on any day, not only Monday.
  const dayNames = c.days.slice(0, 7).map((d) => WEEKDAY.format(civil(d.date)));
  const rows = [];
  for (let i = 0; i < c.days.length; i += 7) {
    rows.push(`<tr>${c.days.slice(i, i + 7).map((d) => `<td data-date="${esc(d.date)}" data-in-span="${d.inSpan}" data-today="${d.today}" class="${d.inSpan ? '' : 'out'}${d.today ? ' today' : ''}">
      <div class="cell-head"><span class="daynum">${week ? esc(DAY_MONTH.format(civil(d.date))) : d.day}</span>${d.today ? '<span class="tag">today</span>' : ''}
        ${d.dst.map((x) => `<span class="dst" title="${esc(x.timeZone)}: clocks change ${esc(x.change)}">DST <span class="small">${esc(x.change)}</span></span>`).join('')}</div>
      ${d.entries.map((e) => `<div class="entry${e.active ? ' active' : ''}${e.result ? ` res-${phaseClass(e.result)}` : ''}" data-window="${esc(e.window)}"${e.active ? ' data-active="true"' : ''}${e.result ? ` data-result="${esc(e.result)}"` : ''} title="${esc(e.window)} ${esc(e.startLocal)}–${esc(e.endLocal)} ${esc(e.timeZone)}${e.continued ? ' (continued from the day before)' : ''}${e.continues ? ' (goes on past midnight)' : ''}">
        <span class="when">${e.continued ? '… ' : ''}${esc(e.startLocal)}–${esc(e.endLocal)}${e.continues ? ' …' : ''}</span> <span class="wname">${esc(e.window)}</span>${c.zone === 'own' ? ` <span class="small muted">${esc(e.timeZone)}</span>` : ''}
        ${e.active ? '<span class="tag on">▶ open now</span>' : ''}${e.result ? ` <span class="result">${(PHASES[e.result] || ['', '•'])[1]} ${esc(e.result)}</span>` : ''}</div>`).join('')}
    </td>`).join('')}</tr>`);
  }
  const legend = c.windows.length ? table(['Window', 'Schedule', 'Zone', 'Duration', 'Phase', 'Problem'], c.windows.map((w) =>
    `<tr data-window="${esc(w.name)}"><th scope="row">${esc(w.name)}</th><td><code>${esc(w.schedule)}</code></td><td>${esc(w.timeZone)}</td><td>${esc(w.duration || '—')}</td><td>${badge(w.phase)}</td><td>${w.problem ? `<span class="problem">⚠ ${esc(w.problem)}</span>` : '<span class="muted">—</span>'}</td></tr>`), ' class="list legend"')
    : empty('This namespace has no maintenance windows.');
  return `<div class="cal-bar">
    <h1>${esc(c.title)}</h1>
    <div class="btns" role="group" aria-label="Span">
      <button type="button" id="span-month" data-span="month" aria-pressed="${!week}">Month</button>
      <button type="button" id="span-week" data-span="week" aria-pressed="${week}">7 days</button></div>
    <div class="btns" role="group" aria-label="Move">
      <button type="button" id="cal-prev" data-goto="${esc(c.previous)}" aria-label="Previous ${week ? 'week' : 'month'}">‹ Previous</button>
      <button type="button" id="cal-next" data-goto="${esc(c.next)}" aria-label="Next ${week ? 'week' : 'month'}">Next ›</button></div>
    <label>Time zone <select id="zone">${opt('own', "Each window's own zone")}${zones.map((z) => opt(z, z)).join('')}</select></label>
  </div>
  <table class="cal${week ? ' week' : ''}" aria-label="${esc(c.title)}"><thead><tr>${dayNames.map((d) => `<th scope="col">${d}</th>`).join('')}</tr></thead>
  <tbody>${rows.join('')}</tbody></table>
  <p class="legend-key small"><span class="entry active">▶ open now</span> <span class="entry res-ok">✓ succeeded</span> <span class="entry res-bad">✗ failed</span> <span class="entry res-idle">– skipped</span> <span class="dst">DST</span> clocks change that day</p>
  <section aria-labelledby="win-h"><h2 id="win-h">Windows</h2>${legend}</section>`;
}

function renderReleases(v, q) {
  if (!v.releases.length) return '<h1>Releases</h1>' + empty('This namespace has no BlueGreenReleases.');
  return `<h1>Releases</h1><div class="cards">${v.releases.map((r) => {
    const slots = r.slots.map((s) => {
      const by = s.selectedBy || [];
      const svc = by.map((k) => `<span class="svc svc-${esc(k)}">${k === 'active' ? '● ' : '◐ '}${esc(k)}: ${esc(k === 'active' ? r.activeService : r.previewService)} ↓</span>`).join('');
      return `<div class="slot slot-${esc(s.slot)}${by.includes('active') ? ' is-active' : ''}" data-slot="${esc(s.slot)}" data-selected-by="${esc(by.join(' '))}">
        <div class="svcs">${svc || '<span class="muted small">no Service selects it</span>'}</div>
        <div class="slot-name">${esc(s.slot)}</div>
        <div class="rev">${s.revision ? `revision <code>${esc(s.revision)}</code>` : '<span class="muted">no Deployment</span>'}</div>
        <div class="ready"><span class="${s.ready < s.replicas ? 'warn-text' : ''}">${s.ready}/${s.replicas}</span> ready</div>
        <div class="muted small">${esc(s.deployment)}</div></div>`;
    }).join('');
    const btns = [];
    if (r.canPromote && r.revision) btns.push(actionButton('promote', `Promote ${r.revision}`, { release: r.name, revision: r.revision }, 'primary'));
    if (r.canAbort && r.revision) btns.push(actionButton('abort', `Abort ${r.revision}`, { release: r.name, revision: r.revision }, 'danger'));
    return `<article class="card" data-release="${esc(r.name)}" aria-labelledby="rel-${esc(r.name)}">
      <header class="card-head"><h2 id="rel-${esc(r.name)}">${esc(r.name)}</h2>
        <span class="badge ${phaseClass(r.phase)}"><span class="icon" aria-hidden="true">${(PHASES[r.phase] || ['', '•'])[1]}</span> <span data-field="phase">${esc(r.phase)}</span></span>
        <div class="btns">${btns.join('')}</div></header>
      <p class="muted">active Service <b>${esc(r.activeService)}</b> → ${esc(r.activeSlot || 'none')} (${esc(r.activeRevision || 'no revision')})
        ${r.previewService ? ` · preview Service <b>${esc(r.previewService)}</b> → ${esc(r.previewSlot || 'none')}` : ''}
        ${r.desiredRevision && r.desiredRevision !== r.activeRevision ? ` · desired <code>${esc(r.desiredRevision)}</code>` : ''}</p>
      <div class="slots">${slots}</div>
      <h3>Validation</h3>${r.validation.length ? `<ol class="steps">${r.validation.map((s) => `<li>${badge(s.phase)} ${esc(s.name)} <span class="muted">${esc(s.action)}</span>${s.message ? ` <span class="muted">— ${esc(s.message)}</span>` : ''}</li>`).join('')}</ol>` : empty('No validation run.')}
      <h3>History</h3>${r.history.length ? table(['Revision', 'Result', 'When', 'Message'], r.history.map((h) =>
        `<tr><th scope="row"><code>${esc(h.revision)}</code></th><td>${badge(h.result)}</td><td>${when(h.at)}</td><td>${esc(h.message)}</td></tr>`), ' class="list"') : empty('No earlier releases.')}
      <details><summary>Conditions (${r.conditions.length})</summary>${conditionsTable(r.conditions)}</details>
    </article>`;
  }).join('')}</div>`;
}

/** An age in the unit an RPO is usually written in: "5h", "30h" (not "1d 6h"), "40m". */
function ageAgainstRpo(sec) {
  return sec >= 3600 && sec < 7 * 86400 ? `${Math.floor(sec / 3600)}h` : dur(sec);
}

function renderBackups(v) {
  if (!v.policies.length) return '<h1>Backups</h1>' + empty('This namespace has no BackupPolicies.');
  return `<h1>Backups</h1><div class="cards">${v.policies.map((p) => {
    const pct = p.rpoFraction === null || p.rpoFraction === undefined ? null : Math.round(p.rpoFraction * 100);
    const label = p.ageSeconds === null || p.ageSeconds === undefined ? 'No good backup yet'
      : `${ageAgainstRpo(p.ageSeconds)} of ${p.rpo || dur(p.rpoSeconds)} RPO`;
    const level = pct === null ? 'idle' : pct > 100 ? 'bad' : pct > 75 ? 'wait' : 'ok';
    const bar = `<div class="rpo-bar ${level}" role="progressbar" aria-valuemin="0" aria-valuemax="100"${pct === null ? '' : ` aria-valuenow="${pct}"`} aria-valuetext="${esc(label)}" aria-label="Time since the last good backup against the RPO">
      <div class="rpo-fill" data-width="${Math.min(pct || 0, 100)}"></div></div>`;
    const fresh = p.fresh === true ? '<span class="badge ok"><span class="icon" aria-hidden="true">✓</span> fresh: yes</span>'
      : p.fresh === false ? '<span class="badge bad"><span class="icon" aria-hidden="true">✗</span> fresh: no</span>' : '<span class="badge idle">fresh: unknown</span>';
    return `<article class="card" data-policy="${esc(p.name)}" aria-labelledby="pol-${esc(p.name)}">
      <header class="card-head"><h2 id="pol-${esc(p.name)}">${esc(p.name)}</h2> ${badge(p.phase)} ${fresh}
        <div class="btns">${p.canBackupNow ? actionButton('backup-now', 'Backup now', { policy: p.name }, 'primary') : ''}</div></header>
      ${bar}<p class="rpo-text"><b>${esc(label)}</b>${pct !== null ? ` (${pct}%)` : ''} · last good ${when(p.lastGood)} · next ${p.nextSchedule ? at(p.nextSchedule) : '—'}</p>
      <h3>History</h3>${p.history.length ? table(['Job', 'Result', 'Trigger', 'Started', 'Took'], p.history.map((b) =>
        `<tr><th scope="row">${esc(b.job)}</th><td>${badge(b.result)}</td><td>${esc(b.trigger || '—')}</td><td>${when(b.started)}</td><td class="num">${b.started ? span(b.started, b.finished) : '—'}</td></tr>`), ' class="list"') : empty('No backups yet.')}
      <details><summary>Conditions (${p.conditions.length})</summary>${conditionsTable(p.conditions)}</details>
    </article>`;
  }).join('')}</div>`;
}

// ---------------------------------------------------------------- data and rendering

async function api(path, opts) {
  let res;
  try {
    res = await fetch(path, { cache: 'no-store', ...opts });
  } catch (e) {
    throw new Error(`The dashboard server does not answer (${e.message}); is kubectl runbook dashboard still running?`);
  }
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON: the status says it */ }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText} from ${path}`);
  return body;
}

/** Where the current route's data comes from. */
function dataPath(r) {
  const base = `/api/ns/${enc(r.ns)}`;
  const pick = (keys) => {
    const q = new URLSearchParams();
    keys.forEach((k) => { if (r.query.get(k)) q.set(k, r.query.get(k)); });
    const s = q.toString();
    return s ? `?${s}` : '';
  };
  switch (r.page) {
    case 'runs': return r.name ? `${base}/runs/${enc(r.name)}` : `${base}/runs${pick(['runbook', 'phase', 'trigger'])}`;
    case 'calendar': return `${base}/calendar${pick(['span', 'date', 'zone'])}`;
    default: return `${base}/${r.page}`;
  }
}

function renderPage(r, data) {
  switch (r.page) {
    case 'now': return renderNow(data);
    case 'runs': return r.name ? renderRun(data) : renderRuns(data, r.query);
    case 'calendar': return renderCalendar(data, r.query);
    case 'releases': return renderReleases(data, r.query);
    default: return renderBackups(data);
  }
}

/** Fetches the current view and swaps the main region, keeping focus and scroll. */
async function refresh() {
  const r = state.route;
  const seq = ++state.seq;
  let data;
  try {
    data = await api(dataPath(r));
  } catch (e) {
    if (seq !== state.seq) return;
    showMessage(e.message, true);
    document.body.dataset.error = e.message;
    // A live update that fails keeps what is on screen; a page never shown says why it is empty.
    if (state.shown !== location.hash) $('#app').innerHTML = `<p class="empty">This page could not be loaded: ${esc(e.message)}</p>`;
    return;
  }
  if (seq !== state.seq) return; // the user moved on while this was in flight
  const main = $('#app');
  // Remember what had focus by identity, not by node: the nodes are about to be replaced.
  const act = document.activeElement;
  const focusKey = act && main.contains(act) ? (act.id ? `#${act.id}` : act.dataset.action ? buttonKey(act) : null) : null;
  const scroll = [window.scrollX, window.scrollY];
  main.innerHTML = renderPage(r, data);
  afterRender(main);
  if (focusKey) {
    const el = focusKey.startsWith('#') ? $(focusKey) : [...main.querySelectorAll('button[data-action]')].find((b) => buttonKey(b) === focusKey);
    if (el) el.focus({ preventScroll: true });
  }
  window.scrollTo(scroll[0], scroll[1]);
  const focus = r.query.get('focus');
  if (focus && state.lastFocus !== location.hash) {
    state.lastFocus = location.hash;
    const card = main.querySelector(`[data-release="${CSS.escape(focus)}"], [data-policy="${CSS.escape(focus)}"]`);
    if (card) { card.classList.add('focused'); card.scrollIntoView({ block: 'start' }); }
  }
  state.shown = location.hash;
  delete document.body.dataset.error;
  if ($('#message').dataset.kind === 'load-error') showMessage('', false);
  document.body.dataset.page = r.page;
  document.body.dataset.renders = String(++state.renders);
  if (!window.__dashboard) window.__dashboard = { firstData: performance.now() };
}

/** Geometry the CSP forbids as inline style attributes is set through the CSSOM instead. */
function afterRender(root) {
  root.querySelectorAll('.bar[data-offset]').forEach((b) => {
    // Clamped so a rounding error on either side never pushes a bar out of its track.
    const left = Math.min(Math.max(+b.dataset.offset || 0, 0), 99.5);
    b.style.left = `${left}%`;
    b.style.width = `${Math.min(Math.max(+b.dataset.width || 0, 0.5), 100 - left)}%`;
  });
  root.querySelectorAll('.rpo-fill[data-width]').forEach((f) => { f.style.width = `${f.dataset.width}%`; });
  root.querySelectorAll('button[data-action]').forEach((b) => {
    const key = buttonKey(b);
    if (state.busy.has(key)) b.disabled = true;
    if (state.confirm === key) armConfirm(b);
  });
}

function showMessage(text, isError, kind) {
  const m = $('#message');
  m.hidden = !text;
  m.textContent = text;
  m.setAttribute('role', isError ? 'alert' : 'status');
  m.className = isError ? 'error' : 'ok';
  m.dataset.kind = kind || (isError ? 'load-error' : 'result');
}

// ---------------------------------------------------------------- live updates

function connectLive(ns) {
  if (state.es && state.esNs === ns) return;
  if (state.es) state.es.close();
  state.esNs = ns;
  state.dropped = false; // a new namespace's first render is already on its way
  const es = new EventSource(`/api/ns/${enc(ns)}/watch`);
  state.es = es;
  setLive('reconnecting', 'Connecting…');
  es.onopen = () => setLive('connected', 'Live');
  es.addEventListener('ready', () => setLive('connected', 'Live'));
  es.addEventListener('change', () => {
    // Debounced: a rollout or a busy run sends bursts; one refetch per burst is enough.
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, 200);
  });
  es.onerror = () => {
    state.dropped = true;
    setLive('reconnecting', 'Reconnecting…');
    // The browser retries by itself unless the server refused the stream; then retry here.
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (state.es === es) { state.es = null; connectLive(ns); } }, 3000);
    }
  };
}

function setLive(st, text) {
  const l = $('#live');
  if (st === 'connected' && state.dropped) {
    // Changes may have been missed while the stream was down: fetch the view again.
    state.dropped = false;
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, 200);
  }
  l.dataset.state = st;
  $('.live-text', l).textContent = text;
  l.title = st === 'connected' ? 'Updates arrive as the cluster changes' : 'The live connection dropped; retrying';
}

// ---------------------------------------------------------------- actions

function actionRequest(b) {
  const ns = enc(state.route.ns), d = b.dataset;
  switch (d.action) {
    case 'approve': case 'reject':
      return [`/api/ns/${ns}/runs/${enc(d.run)}/${d.action}`, { step: d.step }];
    case 'cancel': case 'rerun':
      return [`/api/ns/${ns}/runs/${enc(d.run)}/${d.action}`, {}];
    case 'promote': case 'abort':
      return [`/api/ns/${ns}/releases/${enc(d.release)}/${d.action}`, { revision: d.revision }];
    default:
      return [`/api/ns/${ns}/backups/${enc(d.policy)}/backup-now`, {}];
  }
}

function armConfirm(b) {
  b.textContent = TWO_CLICK[b.dataset.action];
  b.classList.add('confirming');
  b.setAttribute('aria-describedby', 'message');
}

async function act(b) {
  const key = buttonKey(b);
  if (TWO_CLICK[b.dataset.action] && state.confirm !== key) {
    // First click arms the button; the second within 8 s acts.
    disarm();
    state.confirm = key;
    armConfirm(b);
    showMessage(`Click "${TWO_CLICK[b.dataset.action]}" to ${b.dataset.action} ${b.dataset.run || b.dataset.release}.`, false, 'result');
    clearTimeout(state.confirmTimer);
    state.confirmTimer = setTimeout(disarm, 8000);
    return;
  }
  disarm();
  const [url, body] = actionRequest(b);
  state.busy.add(key);
  b.disabled = true;
  b.setAttribute('aria-busy', 'true');
  try {
    const token = $('meta[name="dashboard-token"]').content;
    const res = await api(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Dashboard-Token': token },
      body: JSON.stringify(body),
    });
    showMessage(res && res.message ? res.message : 'Done.', false, 'result');
    if (res && res.name && b.dataset.action === 'rerun') location.hash = link('runs', res.name);
  } catch (e) {
    showMessage(e.message, true, 'action-error');
  } finally {
    state.busy.delete(key);
    // The node may have been replaced by a live re-render; re-enable whichever is current.
    document.querySelectorAll('button[data-action]').forEach((x) => {
      if (buttonKey(x) === key) { x.disabled = false; x.removeAttribute('aria-busy'); }
    });
  }
  refresh();
}

function disarm() {
  clearTimeout(state.confirmTimer);
  state.confirm = null;
  document.querySelectorAll('button.confirming').forEach((x) => {
    x.textContent = x.dataset.label;
    x.classList.remove('confirming');
    x.removeAttribute('aria-describedby');
  });
}

// ---------------------------------------------------------------- wiring

function setQuery(changes, name) {
  const r = state.route;
  const q = Object.fromEntries(r.query.entries());
  Object.assign(q, changes);
  delete q.focus;
  location.hash = hashFor(r.ns, r.page, name === undefined ? r.name : name, q);
}

document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button');
  if (!b) {
    if (ev.target.closest('a.skip')) { ev.preventDefault(); $('#app').focus(); }
    return;
  }
  if (b.dataset.action) { act(b); return; }
  if (b.id === 'span-month' || b.id === 'span-week') setQuery({ span: b.dataset.span });
  else if (b.id === 'cal-prev' || b.id === 'cal-next') setQuery({ date: b.dataset.goto });
});

document.addEventListener('change', (ev) => {
  const t = ev.target;
  if (t.id === 'namespace') {
    const r = state.route;
    location.hash = hashFor(t.value, r ? r.page : 'now');
  } else if (t.dataset.filter) {
    setQuery({ [t.dataset.filter]: t.value });
  } else if (t.id === 'zone') {
    setQuery({ zone: t.value });
  }
});

document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && state.confirm) { disarm(); showMessage('', false); }
});

/** Reads the fragment, fixes it up when it names no page, updates the chrome and renders. */
function route() {
  const r = parseHash();
  if (!r) {
    location.replace(hashFor(state.ctx.namespace, 'now'));
    return; // hashchange comes back here
  }
  const samePage = state.route && state.route.ns === r.ns && state.route.page === r.page && state.route.name === r.name;
  state.route = r;
  disarm();
  const sel = $('#namespace');
  if (![...sel.options].some((o) => o.value === r.ns)) sel.insertAdjacentHTML('beforeend', `<option>${esc(r.ns)}</option>`);
  sel.value = r.ns;
  document.querySelectorAll('a[data-nav]').forEach((a) => {
    a.href = hashFor(r.ns, a.dataset.nav);
    if (a.dataset.nav === r.page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  document.title = `${r.name || r.page[0].toUpperCase() + r.page.slice(1)} · ${r.ns} · runbook-operator`;
  if (!samePage) window.scrollTo(0, 0);
  connectLive(r.ns);
  refresh();
}

async function start() {
  try {
    state.ctx = await api('/api/context');
  } catch (e) {
    showMessage(e.message, true);
    document.body.dataset.error = e.message;
    $('#app').innerHTML = empty('The dashboard could not read your kubeconfig context.');
    return;
  }
  const c = state.ctx;
  $('#user').textContent = c.user ? `Signed in as ${c.user}` : '';
  $('#namespace').innerHTML = (c.namespaces || [c.namespace]).map((n) => `<option>${esc(n)}</option>`).join('');
  window.addEventListener('hashchange', route);
  route();
}

start();
