'use strict';
/*
 * The jobhost dashboard: one file of plain JavaScript, no build step, no
 * dependencies, served at /ui under a CSP that allows only same-origin
 * scripts and styles (so nothing here sets inline style attributes from
 * markup; element.style from script is fine).
 *
 * A tour, in file order:
 *
 *  1. DOM helpers      h() and svg() build elements; small widgets (state
 *                      badges, progress bars, tables, cards, form fields).
 *  2. Formatting       times (the API speaks epoch milliseconds), durations,
 *                      bytes, percentages.
 *  3. Session, roles   the token lives in sessionStorage only; GET /v1/me
 *                      names the caller; may() mirrors the server's role
 *                      checks (host/src/api/auth.rs) to hide what a role
 *                      cannot do. The server still decides.
 *  4. API client       api() sends the bearer token, parses JSON, and turns
 *                      {"error":{"code","message"}} into an ApiError that the
 *                      banner shows with its HTTP status.
 *  5. Live streams     EventSource cannot send Authorization, so job and
 *                      workflow streams (GET /v1/jobs/{id}/events,
 *                      /v1/workflows/{id}/events) are read with fetch() and a
 *                      small incremental SSE parser; followStream() resumes
 *                      with Last-Event-ID; streamPool() caps streams per page.
 *  6. Charts           inline SVG charts of the last hour, built here.
 *  7. Router           hash routes (#/, #/jobs, #/jobs/<id>, #/workflows,
 *                      #/workflows/<id>, #/schedules, #/schedules/<id>, ...).
 *                      Each page gets a context whose AbortController and
 *                      timers end when the page is left, which also stops
 *                      its streams.
 *  8. Shell            login screen, header with nav and whoami, banners.
 *  9. Pages            overview, jobs, job, workflows, workflow, schedules,
 *                      schedule, plugins, queues, workers, locks, tokens,
 *                      tenants.
 * 10. Boot.
 *
 * Stable hooks for browser tests are data-test attributes (see the report
 * of the change that added this file, or grep "test:").
 */

/* ------------------------------------------------------------------------
 * 1. DOM helpers
 * --------------------------------------------------------------------- */

/** Properties set as DOM properties rather than attributes. */
const DOM_PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'readOnly', 'required']);

/**
 * An element: h('a', {href, class, test, onclick}, ...children).
 * `test` sets data-test, `text` the text, on* keys add listeners; null,
 * undefined and false props and children are skipped.
 */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'test') node.dataset.test = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (DOM_PROPERTIES.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  return append(node, children);
}

/** An SVG element with attributes. */
function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value != null) node.setAttribute(key, String(value));
  }
  return append(node, children);
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replaces the children of `node`. */
function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** Renders `data` into `container` unless it is what the container shows
 * already, so a refresh that changed nothing keeps every element. */
function renderChanged(container, data, render) {
  const key = JSON.stringify(data);
  if (container.renderedKey === key) return;
  container.renderedKey = key;
  replace(container, render(data));
}

/** Replaces a cell's content only when `key` changed, so rows refreshed
 * every few seconds keep their elements (and a test's references). */
function setCell(cell, key, ...content) {
  if (cell.renderedKey === key) return;
  cell.renderedKey = key;
  replace(cell, ...content);
}

const STATES = ['blocked', 'scheduled', 'pending', 'running', 'completed', 'failed', 'cancelled', 'expired'];
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired']);
const ACTIVE = new Set(['blocked', 'scheduled', 'pending', 'running']);
/** The workflow states (read from its steps') that say every step finished. */
const WORKFLOW_TERMINAL = new Set(['completed', 'failed', 'cancelled', 'various_complete']);

function stateBadge(state, test) {
  return h('span', {class: `badge state-${state}`, test, text: state});
}

function setBadge(badge, state) {
  badge.className = `badge state-${state}`;
  badge.textContent = state;
  badge.dataset.state = state;
}

function progressBar(test) {
  return h('div', {class: 'progress', test, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'data-percent': 0},
    h('div', {class: 'progress-fill'}),
    h('span', {class: 'progress-label', text: '0 %'}));
}

/** Sets a progress bar to `percent` (0..100) and colours it by job state. */
function setProgress(bar, percent, state) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const rounded = Math.round(value);
  bar.dataset.percent = String(rounded);
  if (state) bar.dataset.state = state;
  bar.setAttribute('aria-valuenow', String(rounded));
  bar.querySelector('.progress-fill').style.width = `${value}%`;
  bar.querySelector('.progress-label').textContent = `${rounded} %`;
}

function button(label, onClick, {test, kind = '', title, disabled} = {}) {
  const node = h('button', {type: 'button', class: `btn ${kind}`.trim(), test, title, disabled, text: label});
  if (onClick) node.addEventListener('click', () => runAction(node, onClick));
  return node;
}

/** Runs a button's action with the button disabled; errors go to the banner. */
async function runAction(node, action) {
  node.disabled = true;
  try {
    await action();
  } catch (err) {
    showError(err);
  } finally {
    node.disabled = false;
  }
}

function card(title, ...children) {
  return h('section', {class: 'card'}, title && h('h2', {class: 'card-title'}, title), children);
}

function pageHead(title, ...extra) {
  return h('div', {class: 'page-head'}, h('h1', {text: title}), h('div', {class: 'page-tools'}, extra));
}

/** A table; headers are strings, or [text, 'num'] for numeric columns. */
function table(headers, rows, {empty = 'Nothing here yet.', test} = {}) {
  const head = headers.map(header => {
    const [text, kind] = Array.isArray(header) ? header : [header];
    return h('th', {class: kind, text});
  });
  const body = h('tbody', null, rows);
  if (!rows.length) body.append(emptyRow(headers.length, empty));
  return h('div', {class: 'table-wrap'}, h('table', {class: 'table', test}, h('thead', null, h('tr', null, head)), body));
}

function emptyRow(columns, text) {
  return h('tr', {class: 'empty'}, h('td', {colspan: columns, text}));
}

const PER_PAGE = [20, 50, 100];

/** The page and page size a list's hash asks for. */
function paging(query) {
  const perPage = Number(query.get('per_page'));
  return {page: Math.max(1, Number(query.get('page')) || 1), perPage: PER_PAGE.includes(perPage) ? perPage : PER_PAGE[0]};
}

/** `params` with the page and page size, unless they are the defaults. */
function withPaging(params, page, perPage) {
  if (page > 1) params.set('page', page);
  if (perPage !== PER_PAGE[0]) params.set('per_page', perPage);
  return params;
}

/** Previous, next, where we are and the page size, for `total` items
 * called `noun`; go(page, perPage) shows another page. */
/** `exact` false: `total` is a lower bound (a search that stopped
 * counting), so the last page is not known. */
function pagerControls({page, perPage, total, noun, exact = true}, go) {
  const pages = Math.max(1, Math.ceil(total / perPage));
  const counted = exact ? `Page ${page} of ${pages} · ${fmtNumber(total)}` : `Page ${page} · at least ${fmtNumber(total)}`;
  const size = select(PER_PAGE.map(n => [String(n), `${n} per page`]), {value: String(perPage), test: 'per-page', onchange: () => {
    go(1, Number(size.value)).catch(() => {});
  }});
  return [
    button('‹ Previous', () => go(page - 1, perPage), {test: 'page-prev', disabled: page <= 1}),
    h('span', {class: 'pager-info', test: 'page-info', text: `${counted} ${noun}${total === 1 ? '' : 's'}`}),
    button('Next ›', () => go(page + 1, perPage), {test: 'page-next', disabled: exact && page >= pages}),
    size,
  ];
}

function field(label, control, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'field-label', text: label}), control,
    hint && h('small', {class: 'hint', text: hint}));
}

/** The JSON of a form's textarea (empty is {}); `what` (plural) names it
 * in the error the banner shows when it does not parse. */
function jsonField(textarea, what) {
  try {
    return JSON.parse(textarea.value.trim() || '{}');
  } catch (err) {
    throw new ApiError(0, 'invalid', `${what} are not valid JSON: ${err.message}`);
  }
}

/** A select of `options` (values, or [value, label] pairs). */
function select(options, {value = '', ...props} = {}) {
  const node = h('select', props, options.map(option => {
    const [optionValue, label] = Array.isArray(option) ? option : [option, option];
    return h('option', {value: optionValue, text: label});
  }));
  node.value = value;
  return node;
}

/** A definition list of [term, value] pairs; a null value shows as a dash. */
function props(pairs) {
  return h('dl', {class: 'props'}, pairs.filter(Boolean).map(([term, value]) =>
    [h('dt', {text: term}), h('dd', null, value == null || value === '' ? dash() : value)]));
}

function dash() {
  return h('span', {class: 'muted', text: '—'});
}

function jobLink(id, text) {
  return pageLink('jobs', id, text);
}

/** A link to `#/<section>/<id>` (a job, workflow or schedule) showing
 * `text` or the short id. */
function pageLink(section, id, text) {
  return h('a', {href: `#/${section}/${id}`, class: 'mono', title: id, text: text || shortId(id)});
}

/** A link to a workflow or schedule by its name, or its short id. */
function namedLink(section, id, name) {
  return name ? h('a', {href: `#/${section}/${id}`, title: id, text: name}) : pageLink(section, id);
}

function code(value) {
  return h('pre', {class: 'code', text: JSON.stringify(value, null, 2)});
}

/* ------------------------------------------------------------------------
 * 2. Formatting
 * --------------------------------------------------------------------- */

const pad = (n, width = 2) => String(n).padStart(width, '0');

function fmtTime(ms) {
  if (ms == null) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(ms)}`;
}

function fmtClock(ms, millis = false) {
  const d = new Date(ms);
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return millis ? `${clock}.${pad(d.getMilliseconds(), 3)}` : clock;
}

/** Today's times as a clock, older ones with their date. */
function fmtWhen(ms) {
  if (ms == null) return '—';
  return new Date(ms).toDateString() === new Date().toDateString() ? fmtClock(ms) : fmtTime(ms).slice(0, 16);
}

function fmtDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${Math.floor(seconds % 60)}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

function fmtBytes(n) {
  if (n == null) return null;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit ? `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}` : `${value} B`;
}

function fmtNumber(n) {
  return n == null ? null : Number(n).toLocaleString('en-US');
}

function fmtRate(ratio) {
  return ratio == null ? '—' : `${(ratio * 100).toFixed(1)} %`;
}

/** UUID v7 ids share their leading (time) digits, so show the random tail. */
function shortId(id) {
  return `…${String(id).slice(-8)}`;
}

/** How long a job ran, or has been running. */
function jobDuration(job) {
  if (job.started_at == null) return null;
  return (job.finished_at ?? Date.now()) - job.started_at;
}

/** An <input type=datetime-local> value for epoch ms, and back. */
function toLocalInput(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  const ms = value ? new Date(value).getTime() : NaN;
  return Number.isFinite(ms) ? String(ms) : '';
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

function sleep(ms, signal) {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
  });
}

/* ------------------------------------------------------------------------
 * 3. Session and roles
 * --------------------------------------------------------------------- */

const TOKEN_KEY = 'jobhost.token';

/** The token (kept for this browser tab only) and the caller it names. */
const session = {token: sessionStorage.getItem(TOKEN_KEY), me: null};

/** Which roles may do what, as the server's extractors decide. */
const ROLES_THAT_MAY = {
  submit: ['host_admin', 'admin', 'operator', 'submitter'], // CanSubmit: enqueue, cancel, retry, clone, remove; workflows, schedules
  view: ['host_admin', 'admin', 'operator', 'viewer'], // CanView: stats, queues, locks, workers
  operate: ['host_admin', 'admin', 'operator'], // CanOperate: plugins, queue settings, locks
  manageTokens: ['host_admin', 'admin'], // CanManageTokens
  administerHost: ['host_admin'], // CanAdministerHost: workers' modes, tenants' quotas
};

function may(what) {
  return Boolean(session.me) && ROLES_THAT_MAY[what].includes(session.me.role);
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.me = null;
}

/* ------------------------------------------------------------------------
 * 4. API client
 * --------------------------------------------------------------------- */

class ApiError extends Error {
  constructor(status, code, message, statusText = '') {
    super(message);
    this.status = status;
    this.code = code;
    this.statusText = statusText;
  }
}

function authHeaders(token = session.token) {
  return token ? {Authorization: `Bearer ${token}`} : {};
}

/**
 * Calls the API: `body` is sent as JSON, `raw` as is with `type`. Answers
 * the parsed JSON (null for 204). A failure is shown in the banner unless
 * `quiet`, and thrown as an ApiError; a 401 ends the session.
 */
async function api(method, path, {body, raw, type, quiet = false, signal, token = session.token} = {}) {
  const headers = authHeaders(token);
  let payload;
  if (raw !== undefined) {
    payload = raw;
    headers['Content-Type'] = type || 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let error;
  try {
    const response = await fetch(path, {method, headers, body: payload, signal, cache: 'no-store'});
    if (response.ok) {
      const text = response.status === 204 ? '' : await response.text();
      return text ? JSON.parse(text) : null;
    }
    error = await errorOf(response);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    error = new ApiError(0, 'network', `the server did not answer (${err.message})`);
  }
  if (error.status === 401 && session.me && token === session.token) {
    endSession();
    error.shown = true;
  } else if (!quiet) {
    showError(error);
    error.shown = true;
  }
  throw error;
}

async function errorOf(response) {
  let code = 'http';
  let message = response.statusText || 'the request failed';
  try {
    const body = await response.json();
    if (body && body.error) ({code, message} = body.error);
  } catch {
    // Not JSON: keep the status text.
  }
  return new ApiError(response.status, code, message, response.statusText);
}

/** Every page of a listing at most 1000 items long (the server's cap). */
async function listAll(path, key, signal) {
  const answer = await api('GET', `${path}${path.includes('?') ? '&' : '?'}per_page=1000`, {signal});
  return answer[key];
}

/* ------------------------------------------------------------------------
 * 5. Live streams (SSE over fetch)
 * --------------------------------------------------------------------- */

/**
 * An incremental parser of text/event-stream: push() text chunks split
 * anywhere; each complete event goes to `dispatch({event, data, id})`.
 * Handles event:, data: (joined by newlines), id:, comments, and CRLF, LF
 * or CR line ends, a CR at the end of a chunk included.
 */
function sseParser(dispatch) {
  let buffer = '';
  let event = '';
  let data = [];
  let id = null;

  function line(text) {
    if (text === '') {
      if (data.length) dispatch({event: event || 'message', data: data.join('\n'), id});
      event = '';
      data = [];
      id = null;
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const name = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') event = value;
    else if (name === 'data') data.push(value);
    else if (name === 'id' && !value.includes('\0')) id = value;
  }

  return {
    push(chunk) {
      buffer += chunk;
      // A CR at the very end may be the first half of a CRLF: wait for more.
      const heldCr = buffer.endsWith('\r');
      if (heldCr) buffer = buffer.slice(0, -1);
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() + (heldCr ? '\r' : '');
      lines.forEach(line);
    },
  };
}

/**
 * Follows job `id`'s stream, calling handlers.state / progress / log /
 * close / dropped (with `logs: false`, no log lines: the server reads
 * none). See followStream.
 */
function followJob(id, handlers, signal, {logs = true} = {}) {
  return followStream(`/v1/jobs/${encodeURIComponent(id)}/events${logs ? '' : '?logs=false'}`, handlers, signal);
}

/**
 * Follows workflow `id`'s stream, calling handlers.step / state / close.
 * Its events carry no ids: a resumed stream starts again with where every
 * step stands.
 */
function followWorkflow(id, handlers, signal) {
  return followStream(`/v1/workflows/${encodeURIComponent(id)}/events`, handlers, signal);
}

/**
 * Follows the stream at `path` until it closes or `signal` aborts, calling
 * handlers[event] with each event's JSON data. A broken stream is resumed
 * with Last-Event-ID, so nothing is missed or repeated; a 4xx (the job is
 * gone, say) ends it. Resolves when it is over.
 */
async function followStream(path, handlers, signal) {
  let lastId = null;
  let closed = false;
  let failures = 0;
  while (!signal.aborted && !closed) {
    try {
      const headers = {...authHeaders(), Accept: 'text/event-stream'};
      if (lastId) headers['Last-Event-ID'] = lastId;
      const response = await fetch(path, {headers, signal, cache: 'no-store'});
      if (!response.ok) throw await errorOf(response);
      const parser = sseParser(({event, data, id: eventId}) => {
        if (eventId) lastId = eventId;
        if (event === 'close') closed = true;
        let payload;
        try {
          payload = JSON.parse(data);
        } catch {
          return;
        }
        handlers[event]?.(payload);
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, {stream: true}));
        failures = 0;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429) {
        if (err.status === 401) endSession();
        return;
      }
      failures += 1;
    }
    if (!closed) await sleep(Math.min(500 * 2 ** failures, 15000), signal);
  }
}

/**
 * Keeps at most `max` job streams open for the page: follow(ids) names the
 * jobs wanted, most wanted first; streams of jobs no longer wanted stop,
 * and a slot that frees (a job finished) goes to the next job waiting.
 * Browsers open only six HTTP/1.1 connections per host, and each stream
 * holds one, so `max` stays well below that for the page's other calls.
 */
function streamPool(max, signal, handlers, options) {
  const open = new Map();
  const finished = new Set();
  let wanted = [];
  signal.addEventListener('abort', () => open.forEach(controller => controller.abort()));

  function fill() {
    for (const id of wanted) {
      if (open.size >= max || signal.aborted) return;
      if (open.has(id) || finished.has(id)) continue;
      const controller = new AbortController();
      open.set(id, controller);
      followJob(id, handlers, controller.signal, options).finally(() => {
        if (open.get(id) !== controller) return;
        open.delete(id);
        finished.add(id);
        fill();
      });
    }
  }

  return {
    follow(ids) {
      wanted = ids;
      for (const [id, controller] of open) {
        if (!ids.includes(id)) {
          controller.abort();
          open.delete(id);
        }
      }
      fill();
    },
  };
}

/* ------------------------------------------------------------------------
 * 6. Charts (inline SVG)
 * --------------------------------------------------------------------- */

const CHART = {width: 600, height: 170, left: 36, right: 8, top: 10, bottom: 22};
const PLOT_WIDTH = CHART.width - CHART.left - CHART.right;
const PLOT_HEIGHT = CHART.height - CHART.top - CHART.bottom;

/** 1, 2 or 5 times a power of ten, at least `value`. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
  return [1, 2, 5, 10].map(step => step * power).find(step => step >= value);
}

/** The axes and grid of a last-hour chart whose y axis goes to `maxY`. */
function chartFrame(label, maxY, formatY) {
  const {width, height, left, right, top} = CHART;
  const root = svg('svg', {viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': label});
  for (const fraction of [0, 0.5, 1]) {
    const y = top + PLOT_HEIGHT * (1 - fraction);
    root.append(
      svg('line', {x1: left, x2: width - right, y1: y, y2: y, class: 'chart-grid'}),
      svg('text', {x: left - 6, y: y + 4, class: 'chart-axis', 'text-anchor': 'end'}, formatY(maxY * fraction)));
  }
  const baseline = height - 6;
  root.append(
    svg('text', {x: left, y: baseline, class: 'chart-axis'}, '60 min ago'),
    svg('text', {x: left + PLOT_WIDTH / 2, y: baseline, class: 'chart-axis', 'text-anchor': 'middle'}, '30 min'),
    svg('text', {x: width - right, y: baseline, class: 'chart-axis', 'text-anchor': 'end'}, 'now'));
  return root;
}

/** Completed and failed jobs per minute, stacked bars. */
function throughputChart(minutes) {
  const most = Math.max(1, ...minutes.map(m => m.completed + m.failed));
  // At least 2, so the middle grid line is a whole number of jobs.
  const maxY = niceCeiling(Math.max(2, most));
  const root = chartFrame('jobs finished per minute', maxY, v => String(Math.round(v)));
  const slot = PLOT_WIDTH / minutes.length;
  const bottom = CHART.top + PLOT_HEIGHT;
  minutes.forEach((minute, i) => {
    const x = CHART.left + i * slot;
    const completed = (PLOT_HEIGHT * minute.completed) / maxY;
    const failed = (PLOT_HEIGHT * minute.failed) / maxY;
    const bar = {x: x + 1, width: Math.max(1, slot - 2)};
    root.append(svg('g', {class: 'chart-slot'},
      svg('title', null, `${fmtClock(minute.start)}: ${minute.completed} completed, ${minute.failed} failed`),
      svg('rect', {x, y: CHART.top, width: slot, height: PLOT_HEIGHT, class: 'chart-hover'}),
      completed > 0 && svg('rect', {...bar, y: bottom - completed, height: completed, class: 'chart-completed'}),
      failed > 0 && svg('rect', {...bar, y: bottom - completed - failed, height: failed, class: 'chart-failed'})));
  });
  return root;
}

/** The share of finished jobs that failed, per minute, as a line with
 * gaps where nothing finished. */
function failureRateChart(minutes) {
  const root = chartFrame('failure rate per minute', 100, v => `${Math.round(v)}%`);
  const slot = PLOT_WIDTH / minutes.length;
  let path = '';
  let previous = false;
  minutes.forEach((minute, i) => {
    const finished = minute.completed + minute.failed;
    if (!finished) {
      previous = false;
      return;
    }
    const rate = minute.failed / finished;
    const x = CHART.left + (i + 0.5) * slot;
    const y = CHART.top + PLOT_HEIGHT * (1 - rate);
    path += `${previous ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
    previous = true;
    root.append(svg('circle', {cx: x, cy: y, r: 2.5, class: 'chart-point'},
      svg('title', null, `${fmtClock(minute.start)}: ${fmtRate(rate)} of ${finished} failed`)));
  });
  if (path) root.insertBefore(svg('path', {d: path, class: 'chart-line'}), root.querySelector('circle'));
  return root;
}

function legend(...items) {
  return h('div', {class: 'legend'}, items.map(([kind, label]) =>
    h('span', {class: 'legend-item'}, h('span', {class: `legend-swatch ${kind}`}), label)));
}

/* ------------------------------------------------------------------------
 * 7. Router and page lifecycle
 * --------------------------------------------------------------------- */

/** Pages: hash path pattern, page function, permission needed, nav entry. */
const ROUTES = [
  {pattern: /^\/$/, page: pageOverview, nav: ['#/', 'Overview', 'nav-overview']},
  {pattern: /^\/jobs$/, page: pageJobs, nav: ['#/jobs', 'Jobs', 'nav-jobs']},
  {pattern: /^\/jobs\/([^/]+)$/, page: pageJob, section: '#/jobs'},
  {pattern: /^\/workflows$/, page: pageWorkflows, nav: ['#/workflows', 'Workflows', 'nav-workflows']},
  {pattern: /^\/workflows\/([^/]+)$/, page: pageWorkflow, section: '#/workflows'},
  {pattern: /^\/schedules$/, page: pageSchedules, nav: ['#/schedules', 'Schedules', 'nav-schedules']},
  {pattern: /^\/schedules\/([^/]+)$/, page: pageSchedule, section: '#/schedules'},
  {pattern: /^\/plugins$/, page: pagePlugins, nav: ['#/plugins', 'Plugins', 'nav-plugins']},
  {pattern: /^\/queues$/, page: pageQueues, may: 'view', nav: ['#/queues', 'Queues', 'nav-queues']},
  {pattern: /^\/workers$/, page: pageWorkers, may: 'view', nav: ['#/workers', 'Workers', 'nav-workers']},
  {pattern: /^\/locks$/, page: pageLocks, may: 'view', nav: ['#/locks', 'Locks', 'nav-locks']},
  {pattern: /^\/tokens$/, page: pageTokens, may: 'manageTokens', nav: ['#/tokens', 'Tokens', 'nav-tokens']},
  {pattern: /^\/tenants$/, page: pageTenants, may: 'manageTokens', nav: ['#/tenants', 'Tenants', 'nav-tenants']},
];

/** The page shown now: its abort controller and timers. */
let currentPage = null;
/** A notice to show on the next page (after a removal, say). */
let nextNotice = null;

function parseHash() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  return {path: path || '/', query: new URLSearchParams(search)};
}

function leavePage() {
  if (!currentPage) return;
  currentPage.controller.abort();
  currentPage.timers.forEach(clearInterval);
  currentPage = null;
}

/** Shows the page the hash names. */
function route() {
  if (!session.me) return;
  leavePage();
  clearBanner();
  showNotice(nextNotice);
  nextNotice = null;
  const {path, query} = parseHash();
  const main = document.getElementById('main');
  main.replaceChildren();
  // Set once the page has loaded what it shows (tests wait for it).
  delete main.dataset.ready;
  const hash = location.hash || '#/';
  const found = ROUTES.map(r => ({r, match: path.match(r.pattern)})).find(({match}) => match);
  markNav(found ? found.r.section || found.r.nav[0] : null);
  if (!found) return main.append(card('Not found', h('p', {text: `There is no page ${path}.`})));
  if (found.r.may && !may(found.r.may)) {
    return main.append(card('Not allowed', h('p', {text: `The ${session.me.role} role cannot see this page.`})));
  }
  const ctx = pageContext(main);
  const args = found.match.slice(1).map(decodeURIComponent);
  Promise.resolve()
    .then(() => found.r.page(ctx, ...args, query))
    .then(() => { if ((location.hash || '#/') === hash) main.dataset.ready = hash; })
    .catch(showError);
}

/**
 * What a page works with: its root element, a signal aborted when it is
 * left, and every(ms, fn) to refresh it (skipped while one is still
 * running, and, with `whileEditing: false`, while a field has focus).
 */
function pageContext(root) {
  const controller = new AbortController();
  const timers = [];
  currentPage = {controller, timers};
  return {
    root,
    signal: controller.signal,
    every(ms, refresh, {whileEditing = true} = {}) {
      let running = false;
      timers.push(setInterval(async () => {
        if (running || (!whileEditing && isEditing(root))) return;
        running = true;
        try {
          await refresh();
        } catch {
          // Shown in the banner already.
        } finally {
          running = false;
        }
      }, ms));
    },
  };
}

function isEditing(root) {
  const active = document.activeElement;
  return Boolean(active && root.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
}

/** Sets the hash without showing the page again (filters, paging). */
function setHashQuietly(path, params) {
  const query = params.toString();
  history.replaceState(null, '', `#${path}${query ? `?${query}` : ''}`);
}

/* ------------------------------------------------------------------------
 * 8. Shell: login, header, banners
 * --------------------------------------------------------------------- */

const app = () => document.getElementById('app');
const banner = h('div', {id: 'banner', class: 'banner', test: 'error', role: 'alert', hidden: true});
const notice = h('div', {id: 'notice', class: 'notice', test: 'notice', role: 'status', hidden: true});

/** Shows an error, with its HTTP status, in the banner (once: api() shows
 * its own errors, and the callers that catch them again skip them). */
function showError(err) {
  if (!err || err.name === 'AbortError' || err.shown) return;
  const status = err.status ? `${err.status}${err.statusText ? ` ${err.statusText}` : ''}` : err.code === 'network' ? 'Network error' : 'Error';
  replace(banner,
    h('strong', {class: 'banner-status', test: 'error-status', text: status}),
    h('span', {class: 'banner-message', test: 'error-message', text: err.message}),
    h('button', {type: 'button', class: 'banner-close', 'aria-label': 'Dismiss', onclick: clearBanner}));
  banner.dataset.status = String(err.status || 0);
  banner.hidden = false;
}

function clearBanner() {
  banner.hidden = true;
  banner.replaceChildren();
}

/** Shows a notice (one line of text and links), or hides it for null. */
function showNotice(...content) {
  notice.hidden = content[0] == null;
  replace(notice, content, notice.hidden ? null : h('button', {type: 'button', class: 'banner-close', 'aria-label': 'Dismiss', onclick: () => showNotice(null)}));
}

function renderLogin() {
  const token = h('input', {type: 'password', id: 'token', test: 'token', autocomplete: 'off', required: true, placeholder: 'jh_…', spellcheck: 'false'});
  const submit = h('button', {type: 'submit', class: 'btn primary', test: 'login', text: 'Log in'});
  const form = h('form', {class: 'login-card', onsubmit: event => {
    event.preventDefault();
    runAction(submit, () => login(token.value.trim()));
  }},
    h('div', {class: 'brand brand-large'}, h('span', {class: 'brand-mark'}), 'jobhost'),
    h('p', {class: 'muted', text: 'Sign in with an API token.'}),
    field('Token', token),
    submit,
    h('p', {class: 'hint', text: 'The token is kept for this browser tab only and sent as a bearer token.'}));
  replace(app(), h('div', {class: 'login'}, banner, form));
  token.focus();
}

async function login(token) {
  clearBanner();
  if (!token) return;
  try {
    session.me = await api('GET', '/v1/me', {token, quiet: true});
  } catch (err) {
    throw err.status === 401 ? new ApiError(401, 'unauthorized', 'invalid token', 'Unauthorized') : err;
  }
  session.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  renderShell();
  route();
}

function logout() {
  leavePage();
  forgetToken();
  history.replaceState(null, '', '#/');
  renderLogin();
}

/** The server refused the token mid-session (revoked, say). */
function endSession() {
  leavePage();
  forgetToken();
  renderLogin();
  showError(new ApiError(401, 'unauthorized', 'invalid token: log in again', 'Unauthorized'));
}

function renderShell() {
  const me = session.me;
  const links = ROUTES.filter(r => r.nav && (!r.may || may(r.may)))
    .map(({nav: [href, label, test]}) => h('a', {href, test, class: 'nav-link', text: label}));
  const whoami = h('span', {class: 'whoami', test: 'whoami', 'data-name': me.name, 'data-tenant': me.tenant, 'data-role': me.role},
    h('strong', {text: me.name}), h('span', {class: 'muted', text: ` @ ${me.tenant}`}), ' ', h('span', {class: 'role', text: me.role}));
  replace(app(),
    h('header', {class: 'topbar'},
      h('a', {class: 'brand', href: '#/'}, h('span', {class: 'brand-mark'}), 'jobhost'),
      h('nav', {class: 'nav'}, links),
      h('div', {class: 'user'}, whoami, button('Log out', logout, {test: 'logout', kind: 'ghost'}))),
    h('main', {class: 'content'}, banner, notice, h('div', {id: 'main'})));
}

function markNav(href) {
  document.querySelectorAll('.nav-link').forEach(link => link.classList.toggle('active', link.getAttribute('href') === href));
}

/* ------------------------------------------------------------------------
 * 9. Pages
 * --------------------------------------------------------------------- */

/* 9a. Overview: jobs per state, the last hour, busy slots, queues. */

async function pageOverview(ctx) {
  const tiles = h('div', {class: 'tiles', test: 'state-counts'});
  ctx.root.append(pageHead('Overview'), tiles);
  if (!may('view')) return overviewOfOwnJobs(ctx, tiles);
  const figures = h('div', {class: 'tiles'});
  const charts = h('div', {class: 'grid-2'});
  const queues = h('div');
  ctx.root.append(figures, charts, card(['Queues ', h('a', {href: '#/queues', class: 'small', text: 'details'})], queues));
  const refresh = async () => {
    const [stats, list] = await Promise.all([
      api('GET', '/v1/stats', {signal: ctx.signal}),
      api('GET', '/v1/queues', {signal: ctx.signal}),
    ]);
    replace(tiles, stateTiles(stats.jobs));
    replace(figures, figureTiles(stats));
    replace(charts, lastHourCharts(stats.last_hour));
    replace(queues, queueGlance(list.queues));
  };
  await refresh();
  ctx.every(5000, refresh);
}

/** A submitter may not read stats: count its own jobs by state instead. */
async function overviewOfOwnJobs(ctx, tiles) {
  ctx.root.append(h('p', {class: 'muted', text: 'Your own jobs. Host and queue figures need the viewer role or above.'}));
  const refresh = async () => {
    const counts = await Promise.all(STATES.map(state =>
      api('GET', `/v1/jobs?state=${state}&per_page=1`, {signal: ctx.signal}).then(page => [state, page.total])));
    replace(tiles, stateTiles(Object.fromEntries(counts)));
  };
  await refresh();
  ctx.every(5000, refresh);
}

function stateTiles(jobs) {
  return STATES.map(state => h('a', {class: `tile tile-state state-${state}`, href: `#/jobs?state=${state}`, test: `count-${state}`},
    h('span', {class: 'tile-value', text: fmtNumber(jobs[state] || 0)}),
    h('span', {class: 'tile-label', text: state})));
}

function figureTiles(stats) {
  const {host, last_hour: hour} = stats;
  const busy = progressBar('busy-slots');
  setProgress(busy, host.slots ? (100 * host.running) / host.slots : 0, 'running');
  const tile = (label, value, ...extra) => h('div', {class: 'tile'}, h('span', {class: 'tile-value', text: value}), h('span', {class: 'tile-label', text: label}), extra);
  return [
    tile('busy slots', `${host.running} / ${host.slots}`, busy),
    tile('finished, last hour', fmtNumber(hour.finished)),
    tile('success rate, last hour', fmtRate(hour.success_rate)),
    tile('waiting', fmtNumber(stats.waiting)),
    tile('stuck', fmtNumber(stats.stuck)),
    tile('uptime', fmtDuration(host.uptime_s * 1000)),
  ];
}

function lastHourCharts(hour) {
  const minutes = hour.minutes;
  if (!Array.isArray(minutes) || !minutes.length) {
    return card('Last hour', h('p', {class: 'muted', text: 'This server does not report per-minute figures.'}));
  }
  const finished = minutes.reduce((sum, m) => sum + m.completed + m.failed, 0);
  const failed = minutes.reduce((sum, m) => sum + m.failed, 0);
  return [
    card(['Throughput ', h('span', {class: 'muted small', text: `${finished} finished in the last hour`})],
      h('div', {test: 'chart-throughput'}, throughputChart(minutes)),
      legend(['chart-completed', 'completed'], ['chart-failed', 'failed'])),
    card(['Failure rate ', h('span', {class: 'muted small', text: finished ? `${fmtRate(failed / finished)} overall` : 'nothing finished'})],
      h('div', {test: 'chart-failure-rate'}, failureRateChart(minutes)),
      legend(['chart-line-swatch', 'failed / finished, per minute'])),
  ];
}

function queueGlance(queues) {
  return table(['Queue', ['Pending', 'num'], ['Running', 'num'], 'Status', ['Per minute', 'num'], ['Success', 'num'], 'Alerts'],
    queues.map(q => h('tr', null,
      h('td', {class: 'mono', text: q.queue}),
      h('td', {class: 'num', text: q.counts.pending || 0}),
      h('td', {class: 'num', text: q.counts.running || 0}),
      h('td', null, pausedBadge(q.settings.paused)),
      h('td', {class: 'num', text: q.throughput_per_minute.toFixed(2)}),
      h('td', {class: 'num', text: fmtRate(q.success_rate)}),
      h('td', null, alerts(q.alerts)))),
    {empty: 'No queue has jobs yet.', test: 'queues-glance'});
}

function pausedBadge(paused, test) {
  return h('span', {class: `badge ${paused ? 'state-paused' : 'state-active'}`, test, text: paused ? 'paused' : 'active'});
}

function alerts(list) {
  return list.length ? h('ul', {class: 'alerts'}, list.map(text => h('li', {text}))) : dash();
}

/* 9b. Jobs: filters, a page of jobs with live state and progress, enqueue. */

const JOB_FILTERS = ['state', 'queue', 'job', 'owner', 'since', 'search', 'schedule'];
/** Streams the jobs page keeps open (see streamPool). */
const ROW_STREAMS = 4;

async function pageJobs(ctx, query) {
  const filters = Object.fromEntries(JOB_FILTERS.map(key => [key, query.get(key) || '']));
  let {page, perPage} = paging(query);
  const rows = new Map();
  const liveProgress = new Map();
  const tbody = h('tbody');
  const none = emptyRow(8, 'No jobs match.');
  const pager = h('div', {class: 'pager'});
  let highlight = null;

  const load = async () => {
    const params = new URLSearchParams({page, per_page: perPage});
    JOB_FILTERS.forEach(key => filters[key] && params.set(key, filters[key]));
    const answer = await api('GET', `/v1/jobs?${params}`, {signal: ctx.signal});
    renderRows(answer.jobs);
    renderPager(answer.total, answer.total_exact);
    const waiting = answer.jobs.filter(job => !TERMINAL.has(job.state));
    waiting.sort((a, b) => (b.state === 'running') - (a.state === 'running'));
    pool.follow(waiting.map(job => job.id));
  };
  const reloadSoon = debounce(() => load().catch(() => {}), 400);
  const pool = streamPool(ROW_STREAMS, ctx.signal, {
    state: event => rows.has(event.job) && setRowState(rows.get(event.job), event.state),
    progress: event => {
      liveProgress.set(event.job, event);
      const row = rows.get(event.job);
      if (row) setRowProgress(row, event, row.state);
    },
    close: reloadSoon,
  }, {logs: false});

  function renderRows(jobs) {
    const shown = new Set(jobs.map(job => job.id));
    for (const [id, row] of rows) {
      if (!shown.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    none.remove();
    for (const job of jobs) {
      if (!rows.has(job.id)) rows.set(job.id, jobRow(job.id));
      const row = rows.get(job.id);
      fillJobRow(row, job, TERMINAL.has(job.state) ? job.progress : liveProgress.get(job.id) || job.progress);
      tbody.append(row.tr);
    }
    if (!jobs.length) tbody.append(none);
    if (highlight && rows.has(highlight)) {
      rows.get(highlight).tr.classList.add('flash');
      highlight = null;
    }
  }

  function renderPager(total, exact) {
    renderChanged(pager, {page, perPage, total, exact}, () => pagerControls({page, perPage, total, exact, noun: 'job'}, go));
  }

  function go(to, size = perPage) {
    page = Math.max(1, to);
    perPage = size;
    const params = new URLSearchParams();
    JOB_FILTERS.forEach(key => filters[key] && params.set(key, filters[key]));
    setHashQuietly('/jobs', withPaging(params, page, perPage));
    return load();
  }

  function enqueued(job) {
    showNotice('Enqueued ', jobLink(job.id, job.id), ` (${job.job}).`);
    highlight = job.id;
    return go(1);
  }

  append(ctx.root, [
    pageHead('Jobs', button('Refresh', load, {test: 'jobs-refresh', kind: 'ghost'})),
    may('submit') && enqueueForm(ctx, enqueued),
    jobFilterForm(filters, () => go(1)),
    h('div', {class: 'table-wrap'}, h('table', {class: 'table', test: 'jobs'},
      h('thead', null, h('tr', null, ['Job', 'Plugin', 'Queue', 'State', 'Progress', 'Owner', 'Created'].map(text => h('th', {text})), h('th', {class: 'num', text: 'Duration'}))),
      tbody)),
    pager]);
  await load();
  ctx.every(5000, load);
  ctx.every(1000, () => rows.forEach(row => row.state === 'running' && fillDuration(row.cells.duration, row.job)));
}

function fillDuration(cell, job) {
  cell.textContent = fmtDuration(jobDuration(job));
}

function jobRow(id) {
  const cells = {
    id: h('td'),
    job: h('td'),
    queue: h('td', {class: 'mono'}),
    state: h('td', {test: 'job-state'}),
    progress: h('td', {class: 'cell-progress'}),
    owner: h('td'),
    created: h('td', {class: 'nowrap'}),
    duration: h('td', {class: 'num nowrap'}),
  };
  const row = {
    tr: h('tr', {test: 'job-row', 'data-id': id}, Object.values(cells)),
    cells,
    badge: stateBadge(''),
    bar: progressBar('row-progress'),
    message: h('div', {class: 'progress-message'}),
    state: null,
    progress: null,
  };
  cells.state.append(row.badge);
  cells.progress.append(row.bar, row.message);
  return row;
}

function fillJobRow(row, job, progress) {
  const {cells} = row;
  setCell(cells.id, job.id, jobLink(job.id));
  setCell(cells.job, `${job.job}\n${job.name || ''}`, job.job, job.name && h('div', {class: 'muted small', text: job.name}));
  setCell(cells.queue, job.queue, job.queue);
  setCell(cells.owner, job.owner, job.owner);
  setCell(cells.created, job.created_at, h('span', {title: fmtTime(job.created_at), text: fmtWhen(job.created_at)}));
  row.job = job;
  fillDuration(cells.duration, job);
  cells.state.title = job.attempt > 1 ? `attempt ${job.attempt} of ${job.max_retries + 1}` : '';
  row.progress = progress;
  setRowState(row, job.state);
}

function setRowState(row, state) {
  row.state = state;
  row.tr.dataset.state = state;
  row.cells.state.dataset.state = state;
  setBadge(row.badge, state);
  setRowProgress(row, row.progress, state);
}

function setRowProgress(row, progress, state) {
  row.progress = progress;
  const percent = progress ? progress.percent : 0;
  row.bar.hidden = !progress && state !== 'running';
  setProgress(row.bar, percent, state);
  row.message.textContent = (progress && progress.message) || '';
}

function jobFilterForm(filters, apply) {
  const controls = {
    state: select([['', 'any state'], ...STATES], {value: filters.state, test: 'filter-state'}),
    queue: h('input', {type: 'text', value: filters.queue, placeholder: 'any queue', test: 'filter-queue'}),
    job: h('input', {type: 'text', value: filters.job, placeholder: 'any plugin', test: 'filter-job'}),
    owner: may('view') ? h('input', {type: 'text', value: filters.owner, placeholder: 'anyone', test: 'filter-owner'}) : null,
    since: h('input', {type: 'datetime-local', value: toLocalInput(filters.since), test: 'filter-since'}),
    search: h('input', {type: 'search', value: filters.search, placeholder: 'text in args, names, errors…', test: 'filter-search'}),
    // Set by a schedule's page only ("Jobs it enqueued"), so shown only then.
    schedule: filters.schedule ? h('input', {type: 'text', class: 'mono', value: filters.schedule, test: 'filter-schedule'}) : null,
  };
  const read = () => {
    for (const [key, control] of Object.entries(controls)) {
      if (control) filters[key] = key === 'since' ? fromLocalInput(control.value) : control.value.trim();
    }
  };
  const reset = () => {
    Object.values(controls).forEach(control => control && (control.value = ''));
    read();
    return apply();
  };
  return h('form', {class: 'filters card', test: 'job-filters', onsubmit: event => {
    event.preventDefault();
    read();
    apply().catch(() => {});
  }},
    field('State', controls.state),
    field('Queue', controls.queue),
    field('Plugin', controls.job),
    controls.owner && field('Owner', controls.owner),
    field('Created since', controls.since),
    h('div', {class: 'field grow'}, field('Search', controls.search)),
    controls.schedule && field('Schedule', controls.schedule),
    h('div', {class: 'filter-buttons'},
      h('button', {type: 'submit', class: 'btn', test: 'filter-apply', text: 'Apply'}),
      button('Reset', reset, {kind: 'ghost', test: 'filter-reset'})));
}

/** A select of the plugins, filled once they are listed. */
function pluginSelect(ctx, test) {
  const node = h('select', {test, required: true}, h('option', {value: '', text: 'loading plugins…'}));
  listAll('/v1/plugins', 'plugins', ctx.signal).then(plugins => {
    replace(node, plugins.length ? plugins.map(p => h('option', {value: p.name, text: p.name})) : h('option', {value: '', text: 'no plugins'}));
  }).catch(() => {});
  return node;
}

function enqueueForm(ctx, enqueued) {
  const job = pluginSelect(ctx, 'enqueue-job');
  const args = h('textarea', {test: 'enqueue-args', rows: 3, spellcheck: 'false', class: 'mono', value: '{}'});
  const queue = h('input', {type: 'text', test: 'enqueue-queue', placeholder: 'default'});
  const priority = h('input', {type: 'number', test: 'enqueue-priority', placeholder: '0', step: 1, min: -1000, max: 1000});
  const delay = h('input', {type: 'number', test: 'enqueue-delay', placeholder: '0', step: 1, min: 0});
  const submit = h('button', {type: 'submit', class: 'btn primary', test: 'enqueue-submit', text: 'Enqueue'});

  async function send() {
    const body = {job: job.value, args: jsonField(args, 'args')};
    if (queue.value.trim()) body.queue = queue.value.trim();
    if (priority.value !== '') body.priority = Number(priority.value);
    if (delay.value !== '') body.delay_ms = Number(delay.value);
    clearBanner();
    await enqueued(await api('POST', '/v1/jobs', {body}));
  }

  return h('details', {class: 'card enqueue', open: true, test: 'enqueue'},
    h('summary', {class: 'card-title', text: 'Enqueue a job'}),
    h('form', {class: 'enqueue-form', test: 'enqueue-form', onsubmit: event => {
      event.preventDefault();
      runAction(submit, send);
    }},
      field('Plugin', job),
      h('div', {class: 'field-args'}, field('Args (JSON)', args)),
      field('Queue', queue),
      field('Priority', priority),
      field('Delay (ms)', delay),
      h('div', {class: 'form-actions'}, submit)));
}

/* 9c. One job: state, progress, log, journal, args, outcome, actions. */

async function pageJob(ctx, id) {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const view = {
    title: h('h1'),
    subtitle: h('div', {class: 'mono muted small', text: id}),
    badge: stateBadge('', 'job-state'),
    actions: h('div', {class: 'page-actions', test: 'job-actions'}),
    bar: progressBar('job-progress'),
    progressMessage: h('div', {class: 'progress-message', test: 'job-progress-message'}),
    position: h('div', {class: 'muted small'}),
    details: h('div'),
    args: h('div', {test: 'job-args'}),
    outcomeTitle: h('span', {text: 'Result'}),
    outcome: h('div', {test: 'job-outcome'}),
    events: h('ol', {class: 'timeline', test: 'job-events'}),
    log: h('div', {class: 'log', test: 'job-log'}),
    clones: h('span', null, dash()),
    duration: h('span'),
  };
  const journal = new Map();
  let job = null;
  let queuePosition = null;
  let liveProgress = null;
  let lastLog = 0;

  const load = async () => {
    const answer = await api('GET', path, {signal: ctx.signal});
    // The job's fields come flattened beside events and queue_position
    // (JobDetails); a nested {"job": {...}} is taken too.
    job = answer.job && typeof answer.job === 'object' ? answer.job : answer;
    queuePosition = answer.queue_position;
    (answer.events || []).forEach(event => journal.set(event.seq, event));
    render();
  };
  const reloadSoon = debounce(() => load().catch(() => {}), 300);

  function render() {
    view.title.textContent = job.name ? `${job.job} · ${job.name}` : job.job;
    setBadge(view.badge, job.state);
    replace(view.actions, jobActions(job, reloadSoon));
    renderProgress();
    fillDuration(view.duration, job);
    replace(view.details, jobDetails(job, view));
    replace(view.args, code(job.args));
    view.outcomeTitle.textContent = job.error ? 'Error' : 'Result';
    replace(view.outcome, jobOutcome(job));
    renderJournal();
  }

  function renderProgress() {
    // The stream's progress is never older than the record's (which is
    // written in batches), so it wins while the page is open.
    const progress = liveProgress || job.progress;
    setProgress(view.bar, progress ? progress.percent : job.state === 'completed' ? 100 : 0, job.state);
    view.progressMessage.textContent = (progress && progress.message) || (progress || ACTIVE.has(job.state) ? '' : 'The job reported no progress.');
    view.position.textContent = queuePosition != null && job.state === 'pending' ? `${queuePosition} ready jobs will be claimed before this one.` : '';
  }

  function renderJournal() {
    const events = [...journal.values()].sort((a, b) => a.seq - b.seq);
    replace(view.events, events.map(journalEntry));
  }

  await load();
  ctx.root.append(
    h('div', {class: 'page-head'},
      h('div', null,
        h('a', {href: '#/jobs', class: 'back', text: '← Jobs'}),
        h('div', {class: 'title-row'}, view.title, view.badge),
        view.subtitle),
      view.actions),
    card('Progress', view.bar, view.progressMessage, view.position),
    h('div', {class: 'grid-2'},
      h('div', {class: 'stack'}, card('Details', view.details), card('Args', view.args), card(view.outcomeTitle, view.outcome)),
      card('Events', view.events)),
    card('Log', view.log));
  loadClones(ctx, id, view.clones);
  ctx.every(1000, () => job.state === 'running' && fillDuration(view.duration, job));
  followJob(id, {
    state(event) {
      journal.set(event.seq, event);
      job.state = event.state;
      render();
      reloadSoon();
    },
    progress(progress) {
      liveProgress = progress;
      renderProgress();
    },
    log(line) {
      if (line.seq <= lastLog) return;
      lastLog = line.seq;
      appendLog(view.log, line);
    },
    close: reloadSoon,
  }, ctx.signal);
}

/** The buttons the caller's role and the job's state allow. */
function jobActions(job, changed) {
  if (!may('submit')) return [];
  const path = `/v1/jobs/${encodeURIComponent(job.id)}`;
  const finished = TERMINAL.has(job.state);
  const open = newJob => { location.hash = `#/jobs/${newJob.id}`; };
  return [
    ACTIVE.has(job.state) && button('Cancel', async () => {
      await api('POST', `${path}/cancel`);
      changed();
    }, {test: 'job-cancel'}),
    finished && !job.retried_by && button('Retry', async () => open(await api('POST', `${path}/retry`, {body: {}})), {test: 'job-retry'}),
    button('Clone', async () => open(await api('POST', `${path}/clone`, {body: {}})), {test: 'job-clone'}),
    finished && button('Remove', async () => {
      if (!confirm(`Remove job ${job.id} with its log and events?`)) return;
      await api('DELETE', path);
      nextNotice = `Removed job ${job.id}.`;
      location.hash = '#/jobs';
    }, {test: 'job-remove', kind: 'danger'}),
  ];
}

/** The job's fields; `live` holds the elements that outlive a render. */
function jobDetails(job, live) {
  const link = id => (id ? jobLink(id, id) : null);
  const links = ids => (ids && ids.length ? h('div', null, ids.map(id => h('div', null, link(id)))) : null);
  const json = value => (value && Object.keys(value).length ? code(value) : null);
  return props([
    ['Plugin', h('span', null, job.job, ' ', h('span', {class: 'mono muted small', title: job.plugin_digest, text: job.plugin_digest.slice(0, 19)}))],
    ['Queue', h('a', {href: `#/jobs?queue=${encodeURIComponent(job.queue)}`, class: 'mono', text: job.queue})],
    ['Priority', String(job.priority)],
    ['Owner', job.owner],
    ['Attempt', `${job.attempt} of ${job.max_retries + 1}`],
    ['Worker', job.worker],
    ['Created', fmtTime(job.created_at)],
    job.state === 'scheduled' && ['Runs at', fmtTime(job.run_at)],
    job.expires_at != null && ['Expires', fmtTime(job.expires_at)],
    ['Started', job.started_at && fmtTime(job.started_at)],
    ['Finished', job.finished_at && fmtTime(job.finished_at)],
    ['Duration', job.started_at && live.duration],
    ['Fuel used', fmtNumber(job.fuel_used)],
    ['Memory peak', fmtBytes(job.memory_peak)],
    job.lock && ['Lock', h('span', {class: 'mono', text: job.lock})],
    job.description && ['Description', job.description],
    job.tags && job.tags.length && ['Tags', h('span', null, job.tags.map(tag => h('span', {class: 'chip', text: tag})))],
    ['Retry of', link(job.retry_of)],
    ['Retried by', link(job.retried_by)],
    ['Cloned from', link(job.cloned_from)],
    ['Clones', live.clones],
    links(job.depends_on) && ['Depends on', links(job.depends_on)],
    job.next_job_id && ['Next job', link(job.next_job_id)],
    job.workflow && ['Workflow', pageLink('workflows', job.workflow, job.workflow)],
    job.step && ['Step', h('span', {class: 'mono', text: job.step})],
    job.parent && ['Parent', link(job.parent)],
    links(job.children) && ['Children', links(job.children)],
    job.schedule && ['Schedule', pageLink('schedules', job.schedule, job.schedule)],
    job.broadcast && ['Broadcast', h('span', {class: 'mono', text: `${job.broadcast} on ${job.pinned_to}`})],
    job.callback_url && ['Callback', h('span', {class: 'mono', text: job.callback_url})],
    job.webhook && ['Webhook', `${job.webhook.state.replace('_', ' ')} after ${job.webhook.attempts} attempts${job.webhook.error ? ` (last: ${job.webhook.error})` : ''}`],
    json(job.metadata) && ['Metadata', json(job.metadata)],
    json(job.plugin_metadata) && ['Plugin metadata', json(job.plugin_metadata)],
  ]);
}

/** The jobs cloned from job `id`, as links. */
async function loadClones(ctx, id, into) {
  try {
    const answer = await api('GET', `/v1/jobs?cloned_from=${encodeURIComponent(id)}&per_page=100`, {quiet: true, signal: ctx.signal});
    if (answer.jobs.length) replace(into, answer.jobs.map(clone => h('div', null, jobLink(clone.id, clone.id), ' ', stateBadge(clone.state))));
  } catch {
    // An older server without the filter: leave the dash.
  }
}

function jobOutcome(job) {
  if (job.error) {
    return h('div', {class: 'error-box', test: 'job-error'},
      h('span', {class: 'badge state-failed', text: job.error.kind}),
      h('pre', {class: 'code', text: job.error.message}));
  }
  if (job.result != null) return h('div', {test: 'job-result'}, code(job.result));
  return h('p', {class: 'muted', text: TERMINAL.has(job.state) ? 'No result.' : 'Not finished yet.'});
}

function journalEntry(event) {
  return h('li', {class: 'timeline-item', 'data-seq': event.seq, 'data-state': event.state},
    h('span', {class: `timeline-dot state-${event.state}`}),
    h('div', {class: 'timeline-body'},
      h('div', null,
        event.from && [stateBadge(event.from), h('span', {class: 'arrow', text: '→'})],
        stateBadge(event.state),
        h('span', {class: 'muted small timeline-time', text: fmtTime(event.at)})),
      h('div', {class: 'small'}, readableTimes(event.reason), event.worker && h('span', {class: 'muted', text: ` · ${event.worker}`}))));
}

/** Epoch-ms times in server text ("run at 1796149353255") as local times. */
function readableTimes(text) {
  return text.replace(/\b1\d{12}\b/g, ms => fmtTime(Number(ms)));
}

/** Adds a line to the log, keeping it scrolled to the end if it was. */
function appendLog(log, line) {
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  log.append(h('div', {class: `log-line level-${line.level}`, 'data-seq': line.seq},
    h('span', {class: 'log-time', text: fmtClock(line.at, true)}),
    h('span', {class: 'log-level', text: line.level}),
    line.attempt > 1 && h('span', {class: 'log-attempt', text: `#${line.attempt}`}),
    h('span', {class: 'log-message', text: line.message})));
  if (atEnd) log.scrollTop = log.scrollHeight;
}

/* 9d. Workflows: a page of them with state and progress; one workflow's
 * steps, followed live, with cancel and retry. */

async function pageWorkflows(ctx, query) {
  let {page, perPage} = paging(query);
  const list = h('div');
  const pager = h('div', {class: 'pager'});

  const load = async () => {
    const answer = await api('GET', `/v1/workflows?${new URLSearchParams({page, per_page: perPage})}`, {signal: ctx.signal});
    renderChanged(list, answer.workflows, workflowTable);
    renderChanged(pager, {page, perPage, total: answer.total}, () => pagerControls({page, perPage, total: answer.total, noun: 'workflow'}, go));
  };

  function go(to, size = perPage) {
    page = Math.max(1, to);
    perPage = size;
    setHashQuietly('/workflows', withPaging(new URLSearchParams(), page, perPage));
    return load();
  }

  ctx.root.append(pageHead('Workflows', button('Refresh', load, {test: 'workflows-refresh', kind: 'ghost'})), card(null, list), pager);
  await load();
  ctx.every(5000, load);
}

function workflowTable(workflows) {
  return table(['Workflow', 'State', 'Progress', ['Steps', 'num'], 'Created', 'Owner'],
    workflows.map(workflow => {
      const bar = progressBar();
      setProgress(bar, workflow.percent, workflow.state);
      return h('tr', {test: 'workflow-row', 'data-id': workflow.id, 'data-state': workflow.state},
        h('td', null, namedLink('workflows', workflow.id, workflow.name)),
        h('td', null, stateBadge(workflow.state, 'workflow-state')),
        h('td', {class: 'cell-progress'}, bar, h('div', {class: 'progress-message', text: `${workflow.done} of ${workflow.total} finished`})),
        h('td', {class: 'num', text: workflow.total}),
        h('td', {class: 'nowrap', title: fmtTime(workflow.created_at), text: fmtWhen(workflow.created_at)}),
        h('td', {text: workflow.owner}));
    }), {empty: 'No workflows yet.', test: 'workflows'});
}

async function pageWorkflow(ctx, id) {
  const path = `/v1/workflows/${encodeURIComponent(id)}`;
  const view = {
    title: h('h1'),
    badge: stateBadge('', 'workflow-state'),
    actions: h('div', {class: 'page-actions', test: 'workflow-actions'}),
    bar: progressBar('workflow-progress'),
    progressMessage: h('div', {class: 'progress-message', test: 'workflow-progress-message'}),
    details: h('div'),
    steps: h('div'),
  };
  let following = false;

  function show(workflow) {
    view.title.textContent = workflow.name || `Workflow ${shortId(workflow.id)}`;
    setBadge(view.badge, workflow.state);
    renderChanged(view.actions, workflow.state, () => workflowActions(workflow, show));
    setProgress(view.bar, workflow.percent, workflow.state);
    view.progressMessage.textContent = `${workflow.done} of ${workflow.total} steps finished`;
    renderChanged(view.details, workflow, workflowDetails);
    renderChanged(view.steps, workflow.steps, stepTable);
    if (!WORKFLOW_TERMINAL.has(workflow.state)) follow();
  }

  const load = async () => show(await api('GET', path, {signal: ctx.signal}));
  const reloadSoon = debounce(() => load().catch(() => {}), 300);

  /** Follows the stream while the workflow goes on (again after a retry). */
  function follow() {
    if (following) return;
    following = true;
    followWorkflow(id, {step: reloadSoon, state: reloadSoon, close: reloadSoon}, ctx.signal).finally(() => { following = false; });
  }

  await load();
  ctx.root.append(
    h('div', {class: 'page-head'},
      h('div', null,
        h('a', {href: '#/workflows', class: 'back', text: '← Workflows'}),
        h('div', {class: 'title-row'}, view.title, view.badge),
        h('div', {class: 'mono muted small', text: id})),
      view.actions),
    h('div', {class: 'grid-2'}, card('Progress', view.bar, view.progressMessage), card('Details', view.details)),
    card('Steps', view.steps));
}

/** Cancel while the workflow goes on; retry once it ended short of
 * completing (the server retries the steps that did not complete). */
function workflowActions(workflow, changed) {
  if (!may('submit')) return [];
  const path = `/v1/workflows/${encodeURIComponent(workflow.id)}`;
  const finished = WORKFLOW_TERMINAL.has(workflow.state);
  return [
    !finished && button('Cancel', async () => changed(await api('POST', `${path}/cancel`)), {test: 'workflow-cancel'}),
    finished && workflow.state !== 'completed' && button('Retry', async () => changed(await api('POST', `${path}/retry`)), {test: 'workflow-retry'}),
  ];
}

function workflowDetails(workflow) {
  return props([
    ['Owner', workflow.owner],
    ['Created', fmtTime(workflow.created_at)],
    ['Retries', String(workflow.retries)],
    ['Steps', stateCounts(workflow.counts)],
    workflow.description && ['Description', workflow.description],
  ]);
}

/** The steps, each after those it depends on; a step whose job was
 * removed has no state. */
function stepTable(steps) {
  return table(['Step', 'State', 'Depends on', 'Job', 'Started', 'Finished', 'Error'],
    steps.map(step => h('tr', {test: 'workflow-step', 'data-step': step.step, 'data-state': step.state || 'removed'},
      h('td', {class: 'mono', test: 'step-name', text: step.step}),
      h('td', null, stateBadge(step.state || 'removed', 'step-state')),
      h('td', null, step.depends_on.length ? step.depends_on.map(name => h('span', {class: 'chip mono', text: name})) : dash()),
      h('td', null, jobLink(step.job)),
      h('td', {class: 'nowrap', text: fmtTime(step.started_at)}),
      h('td', {class: 'nowrap', text: fmtTime(step.finished_at)}),
      h('td', null, step.error ? [h('span', {class: 'muted small', text: `${step.error.kind}: `}), step.error.message] : dash()))),
    {empty: 'No steps.', test: 'workflow-steps'});
}

/* 9e. Schedules: recurring jobs; create, pause, resume, delete. */

async function pageSchedules(ctx) {
  const list = h('div');
  const load = async () => renderChanged(list, (await api('GET', '/v1/schedules', {signal: ctx.signal})).schedules, scheduleTable);
  const created = async schedule => {
    showNotice('Created schedule ', namedLink('schedules', schedule.id, schedule.name), ` (${schedule.cron}, ${schedule.timezone}).`);
    await load();
  };
  append(ctx.root, [
    pageHead('Schedules', button('Refresh', load, {test: 'schedules-refresh', kind: 'ghost'})),
    may('submit') && scheduleForm(ctx, created),
    card('Schedules', list)]);
  await load();
  ctx.every(5000, load);
}

function scheduleTable(schedules) {
  return table(['Schedule', 'Cron', 'Time zone', 'Plugin', 'Status', 'Next run', ['Runs', 'num'], 'Last job'],
    schedules.map(schedule => h('tr', {test: 'schedule-row', 'data-id': schedule.id},
      h('td', null, namedLink('schedules', schedule.id, schedule.name)),
      h('td', {class: 'mono', text: schedule.cron}),
      h('td', {text: schedule.timezone}),
      h('td', {class: 'mono', text: schedule.job.job}),
      h('td', null, pausedBadge(schedule.paused)),
      h('td', {class: 'nowrap', text: fmtTime(schedule.next_run_at)}),
      h('td', {class: 'num', text: fmtNumber(schedule.runs)}),
      h('td', null, schedule.last_job ? jobLink(schedule.last_job) : dash()))),
    {empty: 'No schedules yet.', test: 'schedules'});
}

function scheduleForm(ctx, created) {
  const name = h('input', {type: 'text', test: 'schedule-name', placeholder: 'nightly report'});
  const cron = h('input', {type: 'text', test: 'schedule-cron', class: 'mono', required: true, spellcheck: 'false', placeholder: '0 3 * * *',
    title: 'minute hour day-of-month month day-of-week, with an optional seconds field first'});
  const timezone = h('input', {type: 'text', test: 'schedule-timezone', placeholder: 'UTC', title: 'an IANA time zone the cron is read in'});
  const job = pluginSelect(ctx, 'schedule-job');
  const missed = select([['run_once', 'run once'], ['skip', 'skip']], {value: 'run_once', test: 'schedule-missed',
    title: 'what the runs missed while no host was up become'});
  const args = h('textarea', {test: 'schedule-args', rows: 3, spellcheck: 'false', class: 'mono', value: '{}'});
  const submit = h('button', {type: 'submit', class: 'btn primary', test: 'schedule-create', text: 'Create schedule'});

  async function send() {
    const body = {cron: cron.value.trim(), timezone: timezone.value.trim() || 'UTC', missed: missed.value, job: {job: job.value, args: jsonField(args, 'args')}};
    if (name.value.trim()) body.name = name.value.trim();
    clearBanner();
    await created(await api('POST', '/v1/schedules', {body}));
  }

  return card('New schedule', h('form', {class: 'inline-form', test: 'schedule-form', onsubmit: event => {
    event.preventDefault();
    runAction(submit, send);
  }},
    field('Name', name),
    field('Cron', cron),
    field('Time zone', timezone),
    field('Plugin', job),
    field('Missed runs', missed),
    h('div', {class: 'field-args'}, field('Args (JSON)', args)),
    h('div', {class: 'form-actions'}, submit)));
}

async function pageSchedule(ctx, id) {
  const path = `/v1/schedules/${encodeURIComponent(id)}`;
  const view = {
    title: h('h1'),
    status: h('span'),
    actions: h('div', {class: 'page-actions', test: 'schedule-actions'}),
    details: h('div', {test: 'schedule-details'}),
    nextRuns: h('div'),
    job: h('div', {test: 'schedule-job'}),
  };

  function show(schedule) {
    view.title.textContent = schedule.name || `Schedule ${shortId(schedule.id)}`;
    renderChanged(view.status, schedule.paused, paused => pausedBadge(paused, 'schedule-status'));
    renderChanged(view.actions, schedule.paused, () => scheduleActions(schedule, show));
    renderChanged(view.details, schedule, scheduleDetails);
    renderChanged(view.nextRuns, {runs: schedule.next_runs, paused: schedule.paused}, nextRunList);
    renderChanged(view.job, schedule.job, job => code(withoutNulls(job)));
  }

  const load = async () => show(await api('GET', path, {signal: ctx.signal}));
  await load();
  ctx.root.append(
    h('div', {class: 'page-head'},
      h('div', null,
        h('a', {href: '#/schedules', class: 'back', text: '← Schedules'}),
        h('div', {class: 'title-row'}, view.title, view.status),
        h('div', {class: 'mono muted small', text: id})),
      view.actions),
    h('div', {class: 'grid-2'},
      card('Details', view.details),
      h('div', {class: 'stack'}, card('Next runs', view.nextRuns), card('The job each run enqueues', view.job))));
  ctx.every(5000, load);
}

function scheduleActions(schedule, changed) {
  if (!may('submit')) return [];
  const path = `/v1/schedules/${encodeURIComponent(schedule.id)}`;
  const label = schedule.name || schedule.id;
  return [
    schedule.paused
      ? button('Resume', async () => changed(await api('POST', `${path}/resume`)), {test: 'schedule-resume'})
      : button('Pause', async () => changed(await api('POST', `${path}/pause`)), {test: 'schedule-pause'}),
    button('Delete', async () => {
      if (!confirm(`Delete schedule ${label}? It enqueues no more jobs; those it enqueued stay.`)) return;
      await api('DELETE', path);
      nextNotice = `Deleted schedule ${label}.`;
      location.hash = '#/schedules';
    }, {test: 'schedule-delete', kind: 'danger'}),
  ];
}

function scheduleDetails(schedule) {
  return props([
    ['Cron', h('span', {class: 'mono', text: schedule.cron})],
    ['Time zone', schedule.timezone],
    ['Plugin', h('span', {class: 'mono', text: schedule.job.job})],
    ['Missed runs', schedule.missed.replace('_', ' ')],
    ['Owner', schedule.owner],
    ['Tenant', schedule.tenant],
    ['Created', fmtTime(schedule.created_at)],
    ['Next run', schedule.next_run_at && fmtTime(schedule.next_run_at)],
    ['Last run', schedule.last_run_at && fmtTime(schedule.last_run_at)],
    ['Runs', fmtNumber(schedule.runs)],
    ['Skipped', fmtNumber(schedule.skipped)],
    ['Last job', schedule.last_job && jobLink(schedule.last_job, schedule.last_job)],
    ['Jobs', h('a', {href: `#/jobs?schedule=${encodeURIComponent(schedule.id)}`, test: 'schedule-jobs', text: 'the jobs it enqueued'})],
    schedule.last_error && ['Last error', h('span', {class: 'warn', test: 'schedule-error', text: schedule.last_error})],
  ]);
}

/** The next run times, in the schedule's zone as the server wrote them. */
function nextRunList({runs, paused}) {
  if (!runs.length) return h('p', {class: 'muted', text: paused ? 'None while paused.' : 'No time ahead.'});
  return h('ol', {class: 'runs', test: 'schedule-next-runs'}, runs.map(run => h('li', {class: 'mono', text: run})));
}

/* 9f. Plugins: list, versions, upload, remove. */

async function pagePlugins(ctx) {
  const list = h('div');
  ctx.root.append(pageHead('Plugins', button('Refresh', () => load(), {kind: 'ghost'})));
  if (may('operate')) ctx.root.append(uploadForm(() => load()));
  ctx.root.append(card('Plugins', list));
  const load = async () => renderChanged(list, await listAll('/v1/plugins', 'plugins', ctx.signal), plugins => pluginTable(plugins, load));
  await load();
}

function pluginTable(plugins, reload) {
  const rows = plugins.flatMap(plugin => {
    const versions = h('tr', {class: 'subrow', hidden: true}, h('td', {colspan: 8}));
    const showVersions = async () => {
      const answer = await api('GET', `/v1/plugins/${encodeURIComponent(plugin.name)}/versions`);
      replace(versions.firstChild, versionTable(plugin, answer.versions, showVersions));
    };
    const toggle = button('Versions', async () => {
      if (versions.hidden) await showVersions();
      versions.hidden = !versions.hidden;
    }, {kind: 'small ghost', test: 'plugin-versions'});
    const remove = may('operate') && !plugin.shared && button('Remove', async () => {
      if (!confirm(`Remove plugin ${plugin.name}?`)) return;
      await api('DELETE', `/v1/plugins/${encodeURIComponent(plugin.name)}`);
      showNotice(`Removed plugin ${plugin.name}.`);
      await reload();
    }, {kind: 'small danger', test: 'plugin-remove'});
    return [h('tr', {test: 'plugin-row', 'data-name': plugin.name},
      h('td', {class: 'mono', text: plugin.name}),
      h('td', null, h('span', {class: `badge ${plugin.shared ? 'kind-shared' : 'kind-uploaded'}`, text: plugin.shared ? 'shared' : 'uploaded'})),
      h('td', {class: 'num', text: fmtBytes(plugin.size)}),
      h('td', {class: 'mono small', title: plugin.digest, text: plugin.digest.slice(0, 19)}),
      h('td', null, interfaces(plugin.imports)),
      h('td', null, interfaces(plugin.exports)),
      h('td', {class: 'small'}, plugin.uploaded_at ? [fmtTime(plugin.uploaded_at), h('div', {class: 'muted', text: plugin.uploader})] : dash()),
      h('td', {class: 'actions'}, toggle, remove)), versions];
  });
  return table(['Name', 'Kind', ['Size', 'num'], 'Digest', 'Imports', 'Exports', 'Uploaded', ''], rows, {empty: 'No plugins.', test: 'plugins'});
}

/** A plugin's imports or exports: short lists inline, long ones folded. */
function interfaces(names) {
  if (!names.length) return dash();
  const list = h('ul', {class: 'interfaces'}, names.map(name => h('li', {class: 'mono small', text: name})));
  return names.length <= 3 ? list : h('details', {class: 'fold'}, h('summary', {class: 'small', text: `${names.length} interfaces`}), list);
}

function versionTable(plugin, versions, reload) {
  return table(['Digest', ['Size', 'num'], 'Uploaded', 'Uploader', ['Jobs waiting or running', 'num'], ''],
    versions.map(version => h('tr', null,
      h('td', {class: 'mono small', text: version.digest}),
      h('td', {class: 'num', text: fmtBytes(version.size)}),
      h('td', {text: fmtTime(version.uploaded_at)}),
      h('td', {text: version.uploader || '—'}),
      h('td', {class: 'num', text: version.jobs}),
      h('td', null, version.current ? h('span', {class: 'badge state-active', text: 'current'}) :
        may('operate') && button('Remove', async () => {
          await api('DELETE', `/v1/plugins/${encodeURIComponent(plugin.name)}/versions/${encodeURIComponent(version.digest)}`);
          await reload();
        }, {kind: 'small danger'})))));
}

function uploadForm(uploaded) {
  const name = h('input', {type: 'text', test: 'plugin-name', required: true, placeholder: 'acme.reports.monthly', pattern: '[a-z0-9][a-z0-9_\\-]*(\\.[a-z0-9][a-z0-9_\\-]*)+'});
  const file = h('input', {type: 'file', test: 'plugin-file', required: true, accept: '.wasm,application/wasm'});
  const submit = h('button', {type: 'submit', class: 'btn primary', test: 'plugin-upload', text: 'Upload'});
  return card('Upload a plugin', h('form', {class: 'inline-form', onsubmit: event => {
    event.preventDefault();
    runAction(submit, async () => {
      const plugin = await api('POST', `/v1/plugins/${encodeURIComponent(name.value.trim())}`, {raw: file.files[0], type: 'application/wasm'});
      showNotice(`Uploaded ${plugin.name} (${plugin.digest.slice(0, 19)}).`);
      event.target.reset();
      await uploaded();
    });
  }},
    field('Qualified name', name),
    field('Component (.wasm)', file),
    h('div', {class: 'form-actions'}, submit)));
}

/* 9g. Queues: health, pause and resume, concurrency. */

async function pageQueues(ctx) {
  const list = h('div');
  ctx.root.append(pageHead('Queues'), card(null, list));
  const load = async () => renderChanged(list, (await api('GET', '/v1/queues', {signal: ctx.signal})).queues, queues => queueTable(queues, load));
  await load();
  ctx.every(5000, load, {whileEditing: false});
}

function queueTable(queues, reload) {
  const operate = may('operate');
  return table(['Queue', 'Status', 'Jobs', ['Stuck', 'num'], ['Per minute', 'num'], ['Success', 'num'], ['Avg duration', 'num'], 'Concurrency', 'Alerts', operate && ''].filter(x => x !== false),
    queues.map(q => {
      const path = `/v1/queues/${encodeURIComponent(q.queue)}`;
      const concurrency = h('input', {type: 'number', min: 1, step: 1, class: 'narrow', placeholder: 'no limit', value: q.settings.concurrency ?? '', test: 'queue-concurrency'});
      const setConcurrency = button('Set', async () => {
        await api('PATCH', path, {body: {concurrency: concurrency.value === '' ? null : Number(concurrency.value)}});
        concurrency.blur();
        await reload();
      }, {kind: 'small', test: 'queue-set-concurrency'});
      const toggle = button(q.settings.paused ? 'Resume' : 'Pause', async () => {
        await api('POST', `${path}/${q.settings.paused ? 'resume' : 'pause'}`);
        await reload();
      }, {kind: 'small', test: q.settings.paused ? 'queue-resume' : 'queue-pause'});
      return h('tr', {test: 'queue-row', 'data-queue': q.queue},
        h('td', null, h('a', {href: `#/jobs?queue=${encodeURIComponent(q.queue)}`, class: 'mono', text: q.queue})),
        h('td', null, pausedBadge(q.settings.paused)),
        h('td', null, stateCounts(q.counts)),
        h('td', {class: `num ${q.stuck ? 'warn' : ''}`, text: q.stuck}),
        h('td', {class: 'num', text: q.throughput_per_minute.toFixed(2)}),
        h('td', {class: 'num', text: fmtRate(q.success_rate)}),
        h('td', {class: 'num', text: fmtDuration(q.average_duration_ms)}),
        h('td', null, operate ? h('div', {class: 'inline'}, concurrency, setConcurrency) : q.settings.concurrency ?? 'no limit'),
        h('td', null, alerts(q.alerts)),
        operate && h('td', {class: 'actions'}, toggle));
    }), {empty: 'No queue has jobs yet.', test: 'queues'});
}

function stateCounts(counts) {
  const present = STATES.filter(state => counts[state]);
  if (!present.length) return dash();
  return h('div', {class: 'counts'}, present.map(state => h('span', {class: `count state-${state}`, title: state}, h('b', {text: counts[state]}), ` ${state}`)));
}

/* 9h. Workers: slots, heartbeats, modes (changed by host admins). */

async function pageWorkers(ctx) {
  const list = h('div');
  ctx.root.append(pageHead('Workers'), card(null, list));
  const load = async () => replace(list, workerTable((await api('GET', '/v1/workers', {signal: ctx.signal})).workers, load));
  await load();
  ctx.every(5000, load);
}

function workerTable(workers, reload) {
  const admin = may('administerHost');
  const command = (worker, action, label) => button(label, async () => {
    await api('POST', `/v1/workers/${encodeURIComponent(worker.id)}/${action}`);
    await reload();
  }, {kind: 'small', test: `worker-${action}`});
  return table(['Worker', 'Mode', 'Busy', 'Heartbeat', 'Started', admin && ''].filter(x => x !== false),
    workers.map(worker => {
      const busy = progressBar();
      setProgress(busy, worker.slots ? (100 * worker.running) / worker.slots : 0, 'running');
      const stale = worker.heartbeat_age_ms > 30000;
      return h('tr', {test: 'worker-row', 'data-id': worker.id},
        h('td', {class: 'mono', text: worker.id}),
        h('td', null, h('span', {class: `badge mode-${worker.mode}`, text: worker.mode})),
        h('td', {class: 'cell-progress'}, busy, h('div', {class: 'progress-message', text: `${worker.running} of ${worker.slots} slots`})),
        h('td', {class: stale ? 'warn' : '', title: fmtTime(worker.heartbeat), text: `${fmtDuration(worker.heartbeat_age_ms)} ago`}),
        h('td', {text: fmtTime(worker.started_at)}),
        admin && h('td', {class: 'actions'},
          worker.mode === 'active' && command(worker, 'pause', 'Pause'),
          worker.mode !== 'active' && command(worker, 'resume', 'Resume'),
          worker.mode !== 'draining' && command(worker, 'drain', 'Drain')));
    }), {empty: 'No worker has reported yet.', test: 'workers'});
}

/* 9i. Locks: held locks and the job holding each. */

async function pageLocks(ctx) {
  const list = h('div');
  ctx.root.append(pageHead('Locks'), card(null, list));
  const load = async () => renderChanged(list, (await api('GET', '/v1/locks', {signal: ctx.signal})).locks, locks => lockTable(locks, load));
  await load();
  ctx.every(5000, load);
}

function lockTable(locks, reload) {
  const operate = may('operate');
  return table(['Lock', 'Held by', operate && ''].filter(x => x !== false), locks.map(lock => h('tr', {test: 'lock-row', 'data-name': lock.name},
    h('td', {class: 'mono', text: lock.name}),
    h('td', null, jobLink(lock.job, lock.job)),
    operate && h('td', {class: 'actions'}, button('Clear', async () => {
      if (!confirm(`Release lock ${lock.name} by hand? Job ${lock.job} may still be running.`)) return;
      await api('DELETE', `/v1/locks/${encodeURIComponent(lock.name)}`);
      await reload();
    }, {kind: 'small danger', test: 'lock-clear'})))), {empty: 'No lock is held.', test: 'locks'});
}

/* 9j. Tokens: list, create (the secret is shown once), revoke. */

async function pageTokens(ctx) {
  const list = h('div');
  const secret = h('div');
  const load = async () => renderChanged(list, (await api('GET', '/v1/tokens', {signal: ctx.signal})).tokens, tokens => tokenTable(tokens, load));
  ctx.root.append(pageHead('Tokens'), secret, tokenForm(async token => {
    replace(secret, secretCard(token));
    await load();
  }), card('Tokens', list));
  await load();
}

function tokenForm(created) {
  const roles = ['viewer', 'submitter', 'operator', 'admin', may('administerHost') && 'host_admin'].filter(Boolean);
  const name = h('input', {type: 'text', test: 'token-name', required: true, placeholder: 'ci', maxlength: 64});
  const role = select(roles, {value: 'viewer', test: 'token-role'});
  const tenant = may('administerHost') && h('input', {type: 'text', test: 'token-tenant', placeholder: session.me.tenant});
  const submit = h('button', {type: 'submit', class: 'btn primary', test: 'token-create', text: 'Create token'});
  return card('New token', h('form', {class: 'inline-form', onsubmit: event => {
    event.preventDefault();
    runAction(submit, async () => {
      const body = {name: name.value.trim(), role: role.value};
      if (tenant && tenant.value.trim()) body.tenant = tenant.value.trim();
      await created(await api('POST', '/v1/tokens', {body}));
      event.target.reset();
    });
  }},
    field('Name', name),
    field('Role', role),
    tenant && field('Tenant', tenant),
    h('div', {class: 'form-actions'}, submit)));
}

function secretCard(token) {
  const value = h('input', {type: 'text', class: 'mono secret', readOnly: true, value: token.secret, test: 'token-secret', onfocus: event => event.target.select()});
  return h('section', {class: 'card secret-card', test: 'token-secret-card'},
    h('h2', {class: 'card-title', text: `Secret of ${token.name} (${token.role} @ ${token.tenant})`}),
    h('p', {text: 'Copy it now: it is shown only this once, and only its hash is stored.'}),
    h('div', {class: 'inline'}, value, button('Copy', async () => {
      value.select();
      await navigator.clipboard.writeText(token.secret);
      showNotice('Copied the secret.');
    }, {kind: 'small'})));
}

function tokenTable(tokens, reload) {
  tokens.sort((a, b) => a.tenant.localeCompare(b.tenant) || a.name.localeCompare(b.name));
  return table(['Name', 'Tenant', 'Role', 'Created', 'Id', ''], tokens.map(token => h('tr', {test: 'token-row', 'data-id': token.id},
    h('td', {text: token.name}),
    h('td', {text: token.tenant}),
    h('td', null, h('span', {class: 'badge role', text: token.role})),
    h('td', {text: fmtTime(token.created_at)}),
    h('td', {class: 'mono small', title: token.id, text: token.id.slice(0, 12)}),
    h('td', {class: 'actions'}, button('Revoke', async () => {
      if (!confirm(`Revoke token ${token.name} of ${token.tenant}? It stops working at once.`)) return;
      await api('DELETE', `/v1/tokens/${encodeURIComponent(token.id)}`);
      await reload();
    }, {kind: 'small danger', test: 'token-revoke'})))), {empty: 'No tokens.', test: 'tokens'});
}

/* 9k. Tenants: quotas (host admins set them; a tenant admin reads its own). */

async function pageTenants(ctx) {
  ctx.root.append(pageHead('Tenants'));
  if (!may('administerHost')) {
    const own = await api('GET', `/v1/tenants/${encodeURIComponent(session.me.tenant)}`, {signal: ctx.signal});
    ctx.root.append(card(`Tenant ${own.name}`, tenantProps(own)), h('p', {class: 'muted', text: 'Only a host admin changes quotas.'}));
    return;
  }
  const list = h('div');
  const editor = tenantEditor(ctx, () => load());
  const load = async () => renderChanged(list, (await api('GET', '/v1/tenants', {signal: ctx.signal})).tenants, tenants => tenantTable(tenants, editor.edit));
  ctx.root.append(editor.node, card('Tenants with quotas', list));
  await load();
}

function tenantProps(tenant) {
  const limit = value => (value == null ? 'no limit' : fmtNumber(value));
  return props([
    ['Running at most', limit(tenant.max_running)],
    ['Waiting at most', `${limit(tenant.max_queued)} (in force: ${fmtNumber(tenant.queued_quota)})`],
    ['Waiting now', fmtNumber(tenant.waiting)],
    ['Highest priority', limit(tenant.max_priority)],
    ['Limit caps', code(withoutNulls(tenant.max_limits))],
  ]);
}

function tenantTable(tenants, edit) {
  const limit = value => (value == null ? '—' : fmtNumber(value));
  return table(['Tenant', ['Running at most', 'num'], ['Waiting at most', 'num'], ['Waiting now', 'num'], ['Highest priority', 'num'], 'Limit caps', ''],
    tenants.map(tenant => h('tr', {test: 'tenant-row', 'data-name': tenant.name},
      h('td', {class: 'mono', text: tenant.name}),
      h('td', {class: 'num', text: limit(tenant.max_running)}),
      h('td', {class: 'num', text: limit(tenant.max_queued)}),
      h('td', {class: 'num', text: fmtNumber(tenant.waiting)}),
      h('td', {class: 'num', text: limit(tenant.max_priority)}),
      h('td', {class: 'mono small', text: JSON.stringify(withoutNulls(tenant.max_limits))}),
      h('td', {class: 'actions'}, button('Edit', () => edit(tenant), {kind: 'small', test: 'tenant-edit'})))),
    {empty: 'No tenant has quotas set.', test: 'tenants'});
}

/** The form that reads and sets one tenant's quotas. */
function tenantEditor(ctx, saved) {
  const number = test => h('input', {type: 'number', step: 1, placeholder: 'no limit', test});
  const fields = {
    name: h('input', {type: 'text', required: true, placeholder: 'default', test: 'tenant-name'}),
    max_running: number('tenant-max-running'),
    max_queued: h('input', {type: 'number', step: 1, placeholder: 'host default', test: 'tenant-max-queued'}),
    max_priority: number('tenant-max-priority'),
    max_limits: h('textarea', {rows: 2, class: 'mono', spellcheck: 'false', value: '{}', test: 'tenant-max-limits'}),
  };
  const edit = tenant => {
    fields.name.value = tenant.name;
    for (const key of ['max_running', 'max_queued', 'max_priority']) fields[key].value = tenant[key] ?? '';
    fields.max_limits.value = JSON.stringify(withoutNulls(tenant.max_limits));
    fields.name.scrollIntoView({block: 'center'});
  };
  const loadOne = async () => edit(await api('GET', `/v1/tenants/${encodeURIComponent(fields.name.value.trim())}`, {signal: ctx.signal}));
  const save = async () => {
    const maxLimits = jsonField(fields.max_limits, 'limit caps');
    const orNull = input => (input.value === '' ? null : Number(input.value));
    const body = {max_running: orNull(fields.max_running), max_queued: orNull(fields.max_queued), max_priority: orNull(fields.max_priority), max_limits: maxLimits};
    const tenant = await api('PUT', `/v1/tenants/${encodeURIComponent(fields.name.value.trim())}`, {body});
    showNotice(`Saved the quotas of ${tenant.name}.`);
    await saved();
  };
  const submit = h('button', {type: 'submit', class: 'btn primary', test: 'tenant-save', text: 'Save quotas'});
  const node = card('Set quotas', h('form', {class: 'inline-form', onsubmit: event => {
    event.preventDefault();
    runAction(submit, save);
  }},
    field('Tenant', fields.name),
    field('Running at most', fields.max_running),
    field('Waiting at most', fields.max_queued),
    field('Highest priority', fields.max_priority),
    h('div', {class: 'field-args'}, field('Limit caps (JSON)', fields.max_limits, 'fuel, wall_time (ms), memory_bytes, table_elements, log_lines, log_bytes, payload_bytes, cancel_grace (ms)')),
    h('div', {class: 'form-actions'}, button('Load', loadOne, {kind: 'ghost', test: 'tenant-load'}), submit)));
  return {node, edit};
}

function withoutNulls(object) {
  return Object.fromEntries(Object.entries(object || {}).filter(([, value]) => value != null));
}

/* ------------------------------------------------------------------------
 * 10. Boot
 * --------------------------------------------------------------------- */

async function boot() {
  window.addEventListener('hashchange', route);
  if (!session.token) return renderLogin();
  try {
    session.me = await api('GET', '/v1/me', {quiet: true});
  } catch (err) {
    if (err.status === 401) forgetToken();
    renderLogin();
    showError(err.status === 401 ? new ApiError(401, 'unauthorized', 'invalid token', 'Unauthorized') : err);
    return;
  }
  renderShell();
  route();
}

boot();
