// webhookd console (/console) and tenant portal (/portal): one small front end over the public
// API (/api/v1). No framework and no build step. Every string that comes from data is put in
// the page with textContent or a text node (the h() helper below), never as HTML.
'use strict';

(() => {
  const MODE = document.body.dataset.mode; // "console" or "portal"
  const S = { csrf: null, scope: null, appId: null, token: null, timers: [] };
  const main = document.getElementById('main');
  const enc = encodeURIComponent;
  const SVG = 'http://www.w3.org/2000/svg';

  // ---- DOM ---------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = String(value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  function announce(text) {
    const live = document.getElementById('live');
    live.textContent = '';
    setTimeout(() => { live.textContent = text; }, 30);
  }

  function page(title, ...content) {
    clearTimers();
    main.replaceChildren(h('h1', { id: 'page-title' }, title), ...content);
    document.title = `${title} · ${MODE === 'portal' ? brandName : 'webhookd console'}`;
    main.focus({ preventScroll: true });
  }

  function message(el, text, ok) {
    el.replaceChildren(text ? h('p', { class: ok ? 'ok' : 'error', role: ok ? 'status' : 'alert' }, text) : '');
  }

  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
  }

  function num(value, digits) {
    if (value === null || value === undefined) return '—';
    return digits === undefined ? String(value) : Number(value).toFixed(digits);
  }

  // ---- API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super(`HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function call(method, path, body, extra) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (MODE === 'portal' && S.token) headers.Authorization = `Bearer ${S.token}`;
    if (MODE === 'console' && method !== 'GET' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
    Object.assign(headers, extra || {});
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_e) { data = { detail: text }; }
    if (!response.ok) {
      if (response.status === 401 && MODE === 'console' && !path.startsWith('/console/')) {
        S.csrf = null;
        showLogin('Your session has ended: log in again.');
      }
      if (response.status === 401 && MODE === 'portal' && S.token && !path.endsWith('/portal-session')) {
        S.token = null; // expired or revoked: nothing more can work with it
        renderNav();
        page('Your portal session has ended',
          h('p', { role: 'alert' }, 'Open the portal again from your product to get a new link.'));
      }
      throw new ApiError(response.status, data);
    }
    return data;
  }

  const get = (path) => call('GET', path);
  const post = (path, body) => call('POST', path, body === undefined ? {} : body);

  function problem(err) {
    if (err instanceof ApiError) {
      const detail = err.body && err.body.detail;
      if (Array.isArray(detail)) {
        return detail.map((d) => `${(d.loc || []).filter((p) => p !== 'body').join('.')}: ${d.msg}`).join('; ');
      }
      if (detail) return String(detail);
      return `the server answered ${err.status}`;
    }
    return String(err && err.message ? err.message : err);
  }

  // Runs an action from a button or form: errors go to `out`, never thrown away.
  async function guard(out, action) {
    message(out, '');
    try {
      return await action();
    } catch (err) {
      message(out, problem(err));
      return undefined;
    }
  }

  const canWrite = () => S.scope === 'admin';
  const appPath = (app) => `/api/v1/app/${enc(app)}`;
  const epPath = (app, ep) => `${appPath(app)}/endpoint/${enc(ep)}`;

  function link(app, ...rest) {
    const tail = rest.map(enc).join('/');
    if (MODE === 'portal') return `#/${tail}`;
    return `#/apps/${enc(app)}${tail ? '/' + tail : ''}`;
  }

  // ---- timers (live refresh) ---------------------------------------------------------------

  function every(ms, fn) {
    S.timers.push(setInterval(() => { if (!document.hidden) fn(); }, ms));
  }

  function clearTimers() {
    for (const t of S.timers) clearInterval(t);
    S.timers = [];
  }

  // ---- charts: inline SVG ------------------------------------------------------------------

  // Buckets are placed by time: the window's 60 slots end now, and a slot with no attempt
  // stays empty (the API returns only buckets that have some).
  function slotOf(bucket, o) {
    const ageS = (Date.now() - new Date(bucket.start).getTime()) / 1000;
    return Math.min(SLOTS - 1, Math.max(0, SLOTS - 1 - Math.floor(ageS / o.bucketSeconds)));
  }

  const SLOTS = 60;
  const W = 300;
  const H = 100;

  function frame(caption, label) {
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
    svg.append(s('line', { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: 'axis' }));
    return svg;
  }

  function barChart(o, caption) {
    const total = o.series.reduce((n, b) => n + b.attempts, 0);
    const svg = frame(caption, `${caption}: ${total} attempts in the last ${o.window}`);
    const max = Math.max(1, ...o.series.map((b) => b.attempts));
    const step = W / SLOTS;
    for (const b of o.series) {
      const x = slotOf(b, o) * step;
      const ok = (b.succeeded / max) * (H - 4);
      const bad = ((b.attempts - b.succeeded) / max) * (H - 4);
      svg.append(s('rect', { x, y: H - ok, width: step - 1, height: ok, class: 'bar-ok' }));
      svg.append(s('rect', { x, y: H - ok - bad, width: step - 1, height: bad, class: 'bar-bad' }));
    }
    return h('figure', {}, h('figcaption', {}, `${caption} (max ${max})`), svg);
  }

  function lineChart(o, value, caption, unit, fixedMax) {
    const points = o.series.filter((b) => value(b) !== null && value(b) !== undefined);
    const max = fixedMax || Math.max(1, ...points.map(value));
    const svg = frame(caption, `${caption}: ${points.length ? `up to ${num(Math.max(...points.map(value)), 1)} ${unit}` : 'no attempts'} in the last ${o.window}`);
    const step = W / SLOTS;
    const xy = points.map((b) => [slotOf(b, o) * step + step / 2, H - 3 - (value(b) / max) * (H - 8)]);
    if (xy.length > 1) svg.append(s('polyline', { points: xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '), class: 'line' }));
    for (const [x, y] of xy) svg.append(s('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, class: 'dot' }));
    return h('figure', {}, h('figcaption', {}, `${caption} (scale 0–${num(max, 0)} ${unit})`), svg);
  }

  function card(label, value, testid) {
    return h('div', { class: 'card', 'data-testid': testid },
      h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
  }

  function statsView(o, compact) {
    const rate = o.successRate === null ? '—' : `${num(o.successRate, 1)} %`;
    const cards = [
      card('Deliveries per second', num(o.deliveriesPerSecond, 2), 'dps'),
      card(`Success (${o.window})`, rate, 'success'),
      card('Latency p50', o.latencyP50Ms === null ? '—' : `${num(o.latencyP50Ms, 0)} ms`, 'p50'),
      card('Latency p95', o.latencyP95Ms === null ? '—' : `${num(o.latencyP95Ms, 0)} ms`, 'p95'),
      card('Due now', num(o.backlog.due), 'due'),
      card('Scheduled', num(o.backlog.scheduled), 'scheduled'),
      card('Delivering', num(o.backlog.delivering), 'delivering'),
      card('Dead letters (24 h)', num(o.deadLetters24h), 'dead24h'),
    ];
    if (!compact) {
      cards.push(
        card('Endpoints paused', num(o.endpoints.paused), 'paused'),
        card('Breaker open', num(o.endpoints.breakerOpen), 'breaker'),
        card('Auto-disabled', num(o.endpoints.autoDisabled), 'autodisabled'),
        card('Disabled (all)', `${o.endpoints.disabled} of ${o.endpoints.total}`, 'disabled'),
      );
    }
    const per = o.window === 'hour' ? 'minute' : '24 minutes';
    return [
      h('div', { class: 'cards' }, cards),
      h('div', { class: 'charts' },
        barChart(o, `Attempts per ${per} (green: succeeded, red: failed)`),
        lineChart(o, (b) => (b.attempts ? (100 * b.succeeded) / b.attempts : null), 'Success rate', '%', 100),
        lineChart(o, (b) => b.p95Ms, 'Latency p95', 'ms')),
    ];
  }

  // Built once per page (a refresh must not replace a control that may have focus).
  function windowToggle(current, onChange) {
    const buttons = ['hour', 'day'].map((w) => h('button', {
      type: 'button', class: 'secondary', 'aria-pressed': String(w === current), 'data-window': w,
      onclick: () => {
        for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.window === w));
        onChange(w);
      },
    }, w === 'hour' ? 'Last hour' : 'Last day'));
    return h('div', { class: 'pager', role: 'group', 'aria-label': 'Time window' }, buttons);
  }

  // ---- login (console) ---------------------------------------------------------------------

  function showLogin(note) {
    clearTimers();
    renderNav();
    const out = h('div', {});
    const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off',
      required: true, 'aria-describedby': 'token-help' });
    const form = h('form', { class: 'stack login', 'aria-labelledby': 'page-title',
      onsubmit: (ev) => {
        ev.preventDefault();
        guard(out, async () => {
          const session = await call('POST', '/console/session', { token: input.value });
          input.value = '';
          S.csrf = session.csrfToken;
          S.scope = session.scope;
          S.appId = session.appId;
          if (location.hash === '' || location.hash === '#/login') location.hash = '#/';
          else route();
        });
      } },
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'muted' },
      'An admin or read token from `webhookd api-token create`. It stays on the server: this ',
      'browser keeps only a session cookie.'),
    h('button', { type: 'submit' }, 'Log in'),
    out);
    page('Log in to webhookd', note ? h('p', { class: 'error', role: 'alert' }, note) : '', form);
  }

  async function logout() {
    await call('DELETE', '/console/session').catch(() => undefined);
    S.csrf = null;
    S.scope = null;
    showLogin('You have logged out.');
  }

  function renderNav() {
    const nav = document.getElementById('nav');
    const who = document.getElementById('who');
    const logged = MODE === 'portal' ? Boolean(S.token) : Boolean(S.csrf);
    if (!logged) {
      nav.replaceChildren();
      who.replaceChildren();
      return;
    }
    const items = MODE === 'portal'
      ? [['Endpoints', '#/'], ['Messages', '#/messages'], ['Dead letters', '#/dead-letters']]
      : [['Overview', '#/'], ['Applications', '#/apps'], ['Messages', '#/messages']];
    const here = location.hash || '#/';
    nav.replaceChildren(...items.map(([label, href]) => h('a', {
      href, 'aria-current': (href === '#/' ? here === '#/' || here === '#' : here.startsWith(href)) ? 'page' : null,
    }, label)));
    if (MODE === 'console') {
      who.replaceChildren(`${S.scope}${S.appId ? ` · ${S.appId}` : ''}`,
        h('button', { type: 'button', class: 'secondary', onclick: logout }, 'Log out'));
    }
  }

  // ---- pages -------------------------------------------------------------------------------

  async function overviewPage() {
    let win = 'hour';
    const box = h('div', { 'aria-live': 'off' });
    const out = h('div', {});
    const load = () => guard(out, async () => {
      const o = await get(`/api/v1/stats/overview?window=${win}`);
      box.replaceChildren(...statsView(o, false));
    });
    const toggle = windowToggle(win, (w) => { win = w; load(); });
    page('Overview', toggle, out, box,
      h('p', { class: 'muted' }, 'Refreshed every 5 seconds.'));
    await load();
    every(5000, load);
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // A paged list that the server searches (`search`): rows() draws one page's items.
  function pagedList(path, search, rows, pager, out, draw) {
    const load = (iterator) => guard(out, async () => {
      const q = new URLSearchParams({ limit: '50' });
      if (iterator) q.set('iterator', iterator);
      if (search.value.trim()) q.set('search', search.value.trim());
      const data = await get(`${path}?${q}`);
      rows.replaceChildren(...draw(data.data));
      pager.replaceChildren(
        h('button', { type: 'button', class: 'secondary', disabled: !iterator, onclick: () => load(data.prevIterator) }, 'Previous page'),
        h('button', { type: 'button', class: 'secondary', disabled: data.done, onclick: () => load(data.iterator) }, 'Next page'));
    });
    search.addEventListener('input', debounce(() => load(null), 250));
    return load;
  }

  async function appsPage() {
    const out = h('div', {});
    const rows = h('tbody', {});
    const search = h('input', { id: 'app-search', type: 'search', placeholder: 'name, uid or id' });
    const pager = h('div', { class: 'pager' });
    const load = pagedList('/api/v1/app', search, rows, pager, out, (apps) => (apps.length ? apps.map((a) => h('tr', { 'data-testid': 'app' },
      h('td', {}, h('a', { href: link(a.id) }, a.name)),
      h('td', {}, a.uid || '—'), h('td', {}, a.id), h('td', {}, when(a.createdAt)))) : [h('tr', {}, h('td', { colspan: 4 }, 'No application matches.'))]));
    page('Applications',
      h('form', { class: 'inline', role: 'search', onsubmit: (ev) => { ev.preventDefault(); load(null); } },
        h('label', { for: 'app-search' }, 'Search applications'), search),
      out,
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'uid'), h('th', {}, 'id'), h('th', {}, 'Created'))), rows),
      pager);
    await load(null);
  }

  function tabs(app, here) {
    const items = [['Endpoints', link(app)], ['Messages', link(app, 'messages')], ['Dead letters', link(app, 'dead-letters')]];
    return h('nav', { class: 'tabs', 'aria-label': 'Application' }, items.map(([label, href]) =>
      h('a', { href, 'aria-current': label === here ? 'page' : null }, label)));
  }

  function endpointForm(onDone) {
    const out = h('div', {});
    const url = h('input', { id: 'new-url', name: 'url', type: 'url', required: true });
    const description = h('input', { id: 'new-description', name: 'description' });
    const types = h('input', { id: 'new-types', name: 'eventTypes', placeholder: 'invoice.paid, invoice.voided' });
    const rate = h('input', { id: 'new-rate', name: 'rateLimit', type: 'number', min: 1 });
    const form = h('form', { class: 'stack', novalidate: true, 'aria-label': 'Add an endpoint',
      onsubmit: (ev) => {
        ev.preventDefault();
        guard(out, async () => {
          const body = { url: url.value.trim(), description: description.value };
          const list = types.value.split(',').map((t) => t.trim()).filter(Boolean);
          if (list.length) body.filterTypes = list;
          if (rate.value) body.rateLimit = Number(rate.value);
          const ep = await onDone(body);
          form.reset();
          message(out, `Endpoint ${ep.id} added.`, true);
        });
      } },
    h('label', { for: 'new-url' }, 'URL'), url,
    h('label', { for: 'new-description' }, 'Description'), description,
    h('label', { for: 'new-types' }, 'Event types (comma-separated; empty: every type)'), types,
    h('label', { for: 'new-rate' }, 'Rate limit (messages per second; empty: none)'), rate,
    h('button', { type: 'submit' }, 'Add endpoint'), out);
    return form;
  }

  async function appPage(app) {
    const out = h('div', {});
    const info = await guard(out, () => get(appPath(app)));
    if (!info) { page('Application', out); return; }
    const rows = h('tbody', {});
    const search = h('input', { id: 'ep-search', type: 'search', placeholder: 'URL, description, uid or id' });
    const pager = h('div', { class: 'pager' });
    const stats = h('div', {});
    const load = pagedList(`${appPath(info.id)}/endpoint`, search, rows, pager, out, (eps) => (eps.length ? eps.map((e) => h('tr', { 'data-testid': 'endpoint' },
      h('td', { class: 'wrap' }, h('a', { href: link(info.id, 'endpoints', e.id) }, e.url)),
      h('td', {}, e.description || '—'),
      h('td', {}, e.disabled ? `Disabled${e.disabledReason ? ': ' + e.disabledReason : ''}` : 'Enabled'),
      h('td', {}, (e.eventTypes || ['every type']).join(', ')))) : [h('tr', {}, h('td', { colspan: 4 }, 'No endpoint matches.'))]));
    const extra = [];
    if (canWrite()) {
      extra.push(h('h2', {}, 'Add an endpoint'), endpointForm(async (body) => {
        const ep = await post(`${appPath(info.id)}/endpoint`, body);
        await load(null);
        return ep;
      }));
      if (MODE === 'console') extra.push(portalLinkBox(info.id));
    }
    page(MODE === 'portal' ? info.name : `Application ${info.name}`,
      tabs(info.id, 'Endpoints'), out, stats,
      h('h2', {}, 'Endpoints'),
      h('form', { class: 'inline', role: 'search', onsubmit: (ev) => { ev.preventDefault(); load(null); } },
        h('label', { for: 'ep-search' }, 'Search endpoints'), search),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'URL'), h('th', {}, 'Description'), h('th', {}, 'State'), h('th', {}, 'Event types'))), rows),
      pager, ...extra);
    await load(null);
    const loadStats = () => guard(out, async () => {
      const o = await get(`${appPath(info.id)}/stats/overview`);
      stats.replaceChildren(...statsView(o, true));
    });
    await loadStats();
    every(10000, loadStats);
  }

  function portalLinkBox(app) {
    const out = h('div', {});
    return h('div', { class: 'panel' }, h('h2', {}, 'Tenant portal'),
      h('p', { class: 'muted' }, 'A one-time link to this application’s portal, for its owner. It carries a token: hand it over, do not keep it.'),
      h('button', { type: 'button', onclick: () => guard(out, async () => {
        const access = await post(`/api/v1/auth/app-portal-access/${enc(app)}`);
        out.replaceChildren(h('label', { for: 'portal-url' }, 'Portal link (shown once)'),
          h('input', { id: 'portal-url', readonly: true, value: access.url, size: 80 }));
      }) }, 'Make a portal link'), out);
  }

  function settingsList(ep) {
    const rows = [
      ['URL', ep.url], ['Description', ep.description || '—'], ['uid', ep.uid || '—'], ['id', ep.id],
      ['Event types', (ep.eventTypes || ['every type']).join(', ')],
      ['Rate limit', ep.ratePerSecond ? `${num(ep.ratePerSecond, 2)} per second` : 'none'],
      ['Burst', ep.burst || 'default'], ['Max in flight', ep.maxInFlight || 'default'],
      ['Timeout', ep.timeoutMs ? `${ep.timeoutMs} ms` : 'default'],
      ['Retry schedule', ep.retryScheduleMs ? ep.retryScheduleMs.map((ms) => `${ms / 1000}s`).join(', ') : 'default'],
      ['Signature', ep.signatureScheme],
    ];
    return h('dl', { class: 'settings' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
  }

  function stateList(ep, state, o) {
    const rows = [
      ['Enabled', ep.disabled ? `no — ${ep.disabledReason || 'no reason given'}` : 'yes'],
      ['Paused', state.paused ? `until ${when(state.pausedUntil)}` : 'no'],
      ['Failing', state.failingSince ? `since ${when(state.failingSince)} (${state.consecutiveFailures} in a row)` : 'no'],
      // The breaker's cool-down is stored as a pause: a pause while failing is how it shows.
      ['Circuit breaker', state.paused && state.failingSince ? 'open (paused while failing)' : 'closed'],
      ['In flight now', o.backlog.delivering], ['Due now', o.backlog.due], ['Scheduled', o.backlog.scheduled],
    ];
    return h('dl', { class: 'settings', 'data-testid': 'endpoint-state' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
  }

  function attemptsTable(attempts, app, showEndpoint) {
    const body = h('tbody', {}, attempts.map((a) => h('tr', { 'data-testid': 'attempt' },
      h('td', {}, when(a.timestamp)),
      h('td', { class: 'wrap' }, h('a', { href: link(app, 'messages', a.msgId) }, a.msgId)),
      showEndpoint ? h('td', { class: 'wrap' }, a.endpointId) : null,
      h('td', {}, a.responseStatusCode || 'none'),
      h('td', {}, a.statusText),
      h('td', {}, a.errorClass || '—'),
      h('td', {}, `${a.responseDurationMs} ms`),
      h('td', {}, h('details', {}, h('summary', {}, 'Response'), h('pre', {}, a.response || '(empty)'))))));
    if (!attempts.length) body.append(h('tr', {}, h('td', { colspan: showEndpoint ? 8 : 7 }, 'No attempts.')));
    return h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'Message'),
      showEndpoint ? h('th', {}, 'Endpoint') : null, h('th', {}, 'Status code'), h('th', {}, 'Outcome'),
      h('th', {}, 'Error class'), h('th', {}, 'Duration'), h('th', {}, 'Response body'))), body);
  }

  async function endpointPage(app, epRef) {
    const out = h('div', {});
    const ep = await guard(out, () => get(epPath(app, epRef)));
    if (!ep) { page('Endpoint', out); return; }
    const base = epPath(app, ep.id);
    const stateBox = h('div', {});
    const chartsBox = h('div', {});
    const attemptsBox = h('div', {});
    let win = 'hour';
    let failedOnly = false;
    const onFresh = [];
    // State and charts refresh by themselves; the attempts (whose response bodies may be open)
    // when asked, or after an action.
    const refreshState = () => guard(out, async () => {
      const [fresh, state, o] = await Promise.all([get(base), get(`${base}/state`), get(`${base}/stats/overview?window=${win}`)]);
      stateBox.replaceChildren(stateList(fresh, state, o));
      for (const update of onFresh) update(fresh);
      chartsBox.replaceChildren(...statsView(o, true));
    });
    const loadAttempts = () => guard(out, async () => {
      const list = await get(`/api/v1/app/${enc(app)}/attempt/endpoint/${enc(ep.id)}?limit=20${failedOnly ? '&status=2' : ''}`);
      attemptsBox.replaceChildren(attemptsTable(list.data, app, false));
    });
    const refresh = async () => { await refreshState(); await loadAttempts(); };
    const filter = h('input', { id: 'failed-only', type: 'checkbox', onchange: (ev) => { failedOnly = ev.target.checked; loadAttempts(); } });
    const toggle = windowToggle(win, (w) => { win = w; refreshState(); });
    page(`Endpoint ${ep.url}`, tabs(app, 'Endpoints'), out,
      h('h2', {}, 'State'), stateBox,
      h('h2', {}, 'Deliveries'), toggle, chartsBox,
      h('h2', {}, 'Settings'), settingsList(ep), secretsBox(base),
      canWrite() ? actionsBox(app, ep, base, refresh, onFresh) : h('p', { class: 'muted' }, 'This token may only read.'),
      h('h2', {}, 'Recent attempts'),
      h('div', { class: 'pager' }, h('label', { class: 'check' }, filter, 'Failed attempts only'),
        h('button', { type: 'button', class: 'secondary', onclick: loadAttempts }, 'Refresh attempts')),
      attemptsBox);
    await refresh();
    every(5000, refreshState);
  }

  function secretsBox(base) {
    const out = h('div', {});
    const secret = h('div', {}, h('span', { class: 'muted' }, 'Signing secret: hidden. '),
      h('button', { type: 'button', class: 'secondary', onclick: () => guard(out, async () => {
        const key = await get(`${base}/secret`);
        secret.replaceChildren('Signing secret: ', h('code', { class: 'secret', 'data-testid': 'secret' }, key.key));
      }) }, 'Reveal secret'));
    const headers = h('div', {}, h('span', { class: 'muted' }, 'Custom headers: hidden. '),
      h('button', { type: 'button', class: 'secondary', onclick: () => guard(out, async () => {
        const got = await get(`${base}/headers`);
        const names = Object.keys(got.headers);
        headers.replaceChildren(h('dl', { class: 'settings' },
          names.flatMap((n) => [h('dt', {}, n), h('dd', {}, got.headers[n])]),
          got.sensitive.flatMap((n) => [h('dt', {}, n), h('dd', { class: 'muted' }, 'sensitive: never shown')]),
          names.length || got.sensitive.length ? [] : [h('dt', {}, 'none'), h('dd', {}, '')]));
      }) }, 'Show headers'));
    return h('div', { class: 'panel' }, secret, headers,
      h('p', { class: 'muted' }, 'Revealing a secret or the headers is logged with your token’s id.'), out);
  }

  function actionsBox(app, ep, base, refresh, onFresh) {
    const out = h('div', {});
    const act = (fn, done) => () => guard(out, async () => { await fn(); message(out, done, true); await refresh(); });
    // Enable or disable, whichever the endpoint's state (as last read) allows.
    const toggle = h('div', {});
    let wasDisabled = null;
    const showToggle = (fresh) => {
      if (fresh.disabled === wasDisabled) return;
      wasDisabled = fresh.disabled;
      const reason = h('input', { id: 'disable-reason', name: 'reason' });
      toggle.replaceChildren(fresh.disabled
        ? h('button', { type: 'button', onclick: act(() => post(`${base}/enable`), 'Enabled.') }, 'Enable')
        : h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); act(() => post(`${base}/disable`, reason.value ? { reason: reason.value } : {}), 'Disabled.')(); } },
          h('label', { for: 'disable-reason' }, 'Reason'), reason, h('button', { type: 'submit', class: 'danger' }, 'Disable')));
    };
    showToggle(ep);
    onFresh.push(showToggle);
    const seconds = h('input', { id: 'pause-seconds', type: 'number', min: 1, value: 300 });
    const pause = h('form', { class: 'inline', onsubmit: (ev) => {
      ev.preventDefault();
      act(() => post(`${base}/pause`, { durationSeconds: Number(seconds.value) }), 'Paused.')();
    } }, h('label', { for: 'pause-seconds' }, 'Pause for (seconds)'), seconds,
    h('button', { type: 'submit', class: 'secondary' }, 'Pause'),
    h('button', { type: 'button', class: 'secondary', onclick: act(() => post(`${base}/resume`), 'Resumed.') }, 'Resume'));
    const rotated = h('div', {});
    const rotate = h('button', { type: 'button', onclick: () => guard(out, async () => {
      const key = await post(`${base}/secret/rotate`);
      rotated.replaceChildren(h('p', {}, 'New secret (shown once; the old one is still signed for the grace period): ',
        h('code', { class: 'secret', 'data-testid': 'new-secret' }, key.key)));
    }) }, 'Rotate secret');
    const eventType = h('input', { id: 'test-event-type', value: 'webhookd.test' });
    const sent = h('div', {});
    const test = h('form', { class: 'inline', onsubmit: (ev) => {
      ev.preventDefault();
      guard(out, async () => {
        const msg = await post(`${base}/send-example`, { eventType: eventType.value, payload: { test: true, sentAt: new Date().toISOString() } });
        sent.replaceChildren(h('p', { class: 'ok', role: 'status' }, 'Test event sent: ', h('a', { href: link(app, 'messages', msg.id) }, msg.id)));
      });
    } }, h('label', { for: 'test-event-type' }, 'Event type'), eventType, h('button', { type: 'submit' }, 'Send test event'));
    return h('section', { class: 'actions', 'aria-labelledby': 'actions-title' },
      h('h2', { id: 'actions-title' }, 'Actions'), out,
      h('div', { class: 'panel' }, toggle),
      h('div', { class: 'panel' }, pause),
      h('div', { class: 'panel' }, rotate, rotated),
      h('div', { class: 'panel' }, test, sent),
      h('div', { class: 'panel' }, editForm(ep, base, refresh)),
      h('div', { class: 'panel' }, deleteBox(app, ep, base)));
  }

  function editForm(ep, base, refresh) {
    const out = h('div', {});
    const field = (id, label, attrs) => [h('label', { for: id }, label), h('input', { id, ...attrs })];
    const [lu, url] = field('edit-url', 'URL', { type: 'url', value: ep.url });
    const [ld, desc] = field('edit-description', 'Description', { value: ep.description });
    const [lt, types] = field('edit-types', 'Event types (comma-separated; empty: every type)', { value: (ep.eventTypes || []).join(', ') });
    const [lr, rate] = field('edit-rate', 'Rate limit (messages per second; empty: none)', { type: 'number', value: ep.throttleRate || '' });
    const [lb, burst] = field('edit-burst', 'Burst (empty: default)', { type: 'number', value: ep.burst || '' });
    const hl = h('label', { for: 'edit-headers' }, 'Add or change headers (one "Name: value" a line)');
    const headers = h('textarea', { id: 'edit-headers', rows: 3 });
    return h('form', { class: 'stack', novalidate: true, 'aria-labelledby': 'edit-title', onsubmit: (ev) => {
      ev.preventDefault();
      guard(out, async () => {
        const list = types.value.split(',').map((t) => t.trim()).filter(Boolean);
        await call('PATCH', base, {
          url: url.value.trim(), description: desc.value, filterTypes: list.length ? list : null,
          rateLimit: rate.value === '' ? null : Number(rate.value), burst: burst.value === '' ? null : Number(burst.value),
        });
        const pairs = {};
        for (const line of headers.value.split('\n')) {
          if (!line.trim()) continue;
          const at = line.indexOf(':');
          if (at < 1) throw new Error(`a header line must be "Name: value", got "${line}"`);
          pairs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        }
        if (Object.keys(pairs).length) await call('PATCH', `${base}/headers`, { headers: pairs });
        headers.value = '';
        message(out, 'Saved.', true);
        await refresh();
      });
    } }, h('h3', { id: 'edit-title' }, 'Edit settings'), lu, url, ld, desc, lt, types, lr, rate, lb, burst, hl, headers,
    h('button', { type: 'submit' }, 'Save'), out);
  }

  function deleteBox(app, ep, base) {
    const out = h('div', {});
    const box = h('div', {});
    const ask = h('button', { type: 'button', class: 'danger', onclick: () => {
      box.replaceChildren(confirmBox(`Delete endpoint ${ep.url}? Its undelivered messages become dead letters.`, () => guard(out, async () => {
        await call('DELETE', base);
        location.hash = link(app);
      }), () => box.replaceChildren()));
    } }, 'Delete endpoint');
    return h('div', {}, ask, box, out);
  }

  function confirmBox(text, onYes, onNo) {
    const yes = h('button', { type: 'button', class: 'danger', onclick: onYes }, 'Confirm');
    const el = h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm', 'aria-describedby': 'confirm-text' },
      h('p', { id: 'confirm-text' }, text), yes, ' ', h('button', { type: 'button', class: 'secondary', onclick: onNo }, 'Cancel'));
    setTimeout(() => yes.focus(), 0);
    return el;
  }

  async function endpointOptions(app, id, label, anyLabel) {
    const data = await get(`${appPath(app)}/endpoint?limit=250`);
    const select = h('select', { id }, h('option', { value: '' }, anyLabel),
      data.data.map((e) => h('option', { value: e.id }, `${e.url}${e.description ? ' — ' + e.description : ''}`)));
    return [h('label', { for: id }, label), select];
  }

  const toIso = (local) => (local ? new Date(local).toISOString() : null);

  const STATUS_TEXT = { 0: 'Succeeded', 1: 'Pending', 2: 'Failed', 3: 'Sending' };

  // The message log: every filter together (docs/api.md, "Message log"). `app` null is the
  // log of every application (the console's, for tokens not limited to one). A page looks at
  // a bounded number of messages, so one may show few or none and still not be the last.
  async function messagesPage(app) {
    const out = h('div', {});
    const allApps = MODE === 'console' && !S.appId;
    let appSelect = null;
    const appNames = new Map(); // id -> name, for the log of every application
    if (MODE === 'console') {
      const apps = await get(`/api/v1/app?limit=250`);
      for (const a of apps.data) appNames.set(a.id, a.name);
      const options = apps.data.map((a) => h('option', { value: a.id, selected: a.id === app || a.uid === app }, a.name === a.uid || !a.uid ? a.name : `${a.name} (${a.uid})`));
      if (app && !apps.data.some((a) => a.id === app || a.uid === app)) options.unshift(h('option', { value: app, selected: true }, app));
      appSelect = h('select', { id: 'f-app' }, allApps ? h('option', { value: '' }, 'All applications') : null, options);
    }
    const chosenApp = () => (appSelect ? appSelect.value : app) || null;
    const endpoint = h('select', { id: 'f-endpoint' });
    const fillEndpoints = async () => {
      const current = chosenApp();
      const data = current ? await get(`${appPath(current)}/endpoint?limit=250`) : { data: [] };
      endpoint.replaceChildren(h('option', { value: '' }, current ? 'Any endpoint' : 'Any endpoint (choose an application to pick one)'),
        ...data.data.map((e) => h('option', { value: e.id }, `${e.url}${e.description ? ' — ' + e.description : ''}`)));
    };
    await fillEndpoints();
    const type = h('input', { id: 'f-type', placeholder: 'invoice.paid, invoice.voided' });
    const status = h('select', { id: 'f-status' }, h('option', { value: '' }, 'Any'),
      Object.entries(STATUS_TEXT).map(([value, text]) => h('option', { value }, text)));
    const after = h('input', { id: 'f-after', type: 'datetime-local' });
    const before = h('input', { id: 'f-before', type: 'datetime-local' });
    const results = h('div', {});
    const pager = h('div', { class: 'pager' });
    const search = (iterator) => guard(out, async () => {
      const current = chosenApp();
      const q = new URLSearchParams({ limit: '50', with_content: 'false' });
      if (iterator) q.set('iterator', iterator);
      if (after.value) q.set('after', toIso(after.value));
      if (before.value) q.set('before', toIso(before.value));
      const types = type.value.split(',').map((t) => t.trim()).filter(Boolean);
      if (types.length) q.set('event_types', types.join(','));
      if (status.value) q.set('status', status.value);
      if (endpoint.value) q.set('endpoint_id', endpoint.value);
      const data = await get(current ? `${appPath(current)}/msg?${q}` : `/api/v1/webhookd/msg?${q}`);
      const showApp = !current;
      const body = h('tbody', {}, data.data.map((m) => h('tr', { 'data-testid': 'message', 'data-status': m.status },
        h('td', {}, when(m.timestamp)),
        showApp ? h('td', { class: 'wrap' }, appNames.get(m.appId) || m.appId || '—') : null,
        h('td', { class: 'wrap' }, (current || m.appId) ? h('a', { href: link(current || m.appId, 'messages', m.id) }, m.id) : m.id),
        h('td', {}, m.eventType),
        h('td', {}, h('span', { class: `status status-${m.status}` }, STATUS_TEXT[m.status] || m.statusText)))));
      if (!data.data.length) {
        const why = data.done ? 'No message matches.' : 'No message matches among the messages looked at for this page: Older looks further back.';
        body.append(h('tr', {}, h('td', { colspan: showApp ? 5 : 4 }, why)));
      }
      results.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Created'), showApp ? h('th', {}, 'Application') : null,
        h('th', {}, 'Message'), h('th', {}, 'Event type'), h('th', {}, 'Status'))), body));
      // A page read backwards (Newer) is `done` when nothing is newer; forwards, when nothing is older.
      const back = Boolean(iterator && iterator.startsWith('-'));
      pager.replaceChildren(
        h('button', { type: 'button', class: 'secondary', disabled: !iterator || !data.prevIterator || (back && data.done), onclick: () => search(data.prevIterator) }, 'Newer'),
        h('button', { type: 'button', class: 'secondary', disabled: !data.iterator || (!back && data.done), onclick: () => search(data.iterator) }, 'Older'));
      announce(`${data.data.length} message${data.data.length === 1 ? '' : 's'} shown`);
    });
    if (appSelect) appSelect.addEventListener('change', () => guard(out, async () => { await fillEndpoints(); await search(null); }));
    const filters = [
      appSelect ? h('div', {}, h('label', { for: 'f-app' }, 'Application'), appSelect) : null,
      h('div', {}, h('label', { for: 'f-endpoint' }, 'Endpoint'), endpoint),
      h('div', {}, h('label', { for: 'f-type' }, 'Event types'), type),
      h('div', {}, h('label', { for: 'f-status' }, 'Status'), status),
      h('div', {}, h('label', { for: 'f-after' }, 'After'), after),
      h('div', {}, h('label', { for: 'f-before' }, 'Before'), before),
      h('button', { type: 'submit' }, 'Filter'),
    ];
    const title = MODE === 'portal' ? 'Messages' : (app ? `Messages of ${app}` : 'Messages');
    page(title, app ? tabs(app, 'Messages') : '',
      h('form', { class: 'inline', 'aria-label': 'Filter messages', onsubmit: (ev) => { ev.preventDefault(); search(null); } }, filters),
      out, results, pager);
    await search(null);
  }

  async function messagePage(app, msgId) {
    const out = h('div', {});
    const msg = await guard(out, () => get(`${appPath(app)}/msg/${enc(msgId)}`));
    if (!msg) { page('Message', tabs(app, 'Messages'), out); return; }
    const attemptsBox = h('div', {});
    const resendBox = h('div', {});
    const load = () => guard(out, async () => {
      const list = await get(`/api/v1/app/${enc(app)}/attempt/msg/${enc(msg.id)}?limit=250`);
      attemptsBox.replaceChildren(attemptsTable(list.data, app, true));
      const endpoints = [...new Set(list.data.map((a) => a.endpointId))];
      const resend = (targets) => guard(out, async () => {
        for (const ep of targets) await post(`${appPath(app)}/msg/${enc(msg.id)}/endpoint/${enc(ep)}/resend`);
        message(out, `Resent to ${targets.length} endpoint${targets.length === 1 ? '' : 's'}.`, true);
      });
      const buttons = endpoints.map((ep) => h('button', { type: 'button', class: 'secondary', onclick: () => resend([ep]) }, `Resend to ${ep}`));
      if (endpoints.length > 1) buttons.push(h('button', { type: 'button', onclick: () => resend(endpoints) }, 'Replay to every endpoint'));
      resendBox.replaceChildren(...(canWrite() ? buttons : []));
    });
    page(`Message ${msg.id}`, tabs(app, 'Messages'), out,
      h('dl', { class: 'settings' }, h('dt', {}, 'Event type'), h('dd', {}, msg.eventType),
        h('dt', {}, 'Created'), h('dd', {}, when(msg.timestamp)), h('dt', {}, 'Deliver at'), h('dd', {}, when(msg.deliverAt))),
      h('h2', {}, 'Payload'), h('pre', { 'data-testid': 'payload' }, JSON.stringify(msg.payload, null, 2)),
      h('h2', {}, 'Attempts'), attemptsBox, resendBox);
    await load();
  }

  async function deadLettersPage(app) {
    const out = h('div', {});
    const [le, endpoint] = await endpointOptions(app, 'd-endpoint', 'Endpoint', 'Every endpoint');
    const since = h('input', { id: 'd-since', type: 'datetime-local' });
    const until = h('input', { id: 'd-until', type: 'datetime-local' });
    const list = h('div', {});
    const confirmArea = h('div', {});
    let shown = [];
    const listPath = (extra) => {
      const q = new URLSearchParams(extra);
      if (since.value) q.set('since', toIso(since.value));
      if (until.value) q.set('until', toIso(until.value));
      const root = endpoint.value ? `${epPath(app, endpoint.value)}/dead-letter` : `${appPath(app)}/dead-letter`;
      return `${root}?${q}`;
    };
    const load = () => guard(out, async () => {
      const data = await get(listPath({ limit: '100' }));
      shown = data.data;
      const body = h('tbody', {}, shown.map((d, i) => h('tr', { 'data-testid': 'dead-letter' },
        h('td', {}, h('input', { type: 'checkbox', id: `dl-${i}`, 'data-index': i, 'aria-label': `Select ${d.msgId} to ${d.endpointId}` })),
        h('td', {}, when(d.failedAt)),
        h('td', { class: 'wrap' }, h('a', { href: link(app, 'messages', d.msgId) }, d.msgId)),
        h('td', { class: 'wrap' }, d.endpointId), h('td', {}, d.eventType), h('td', {}, d.attempts),
        h('td', {}, d.lastStatusCode === null ? 'none' : d.lastStatusCode),
        h('td', { class: 'wrap' }, d.lastError || '—'),
        h('td', {}, canWrite() ? h('button', { type: 'button', class: 'secondary', onclick: () => requeue([d], `Requeue ${d.msgId} to ${d.endpointId}?`) }, 'Requeue') : ''))));
      if (!shown.length) body.append(h('tr', {}, h('td', { colspan: 9 }, 'No dead letters.')));
      list.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, h('span', { class: 'visually-hidden' }, 'Select')),
        h('th', {}, 'Failed'), h('th', {}, 'Message'), h('th', {}, 'Endpoint'), h('th', {}, 'Event type'), h('th', {}, 'Attempts'),
        h('th', {}, 'Last status'), h('th', {}, 'Reason'), h('th', {}, h('span', { class: 'visually-hidden' }, 'Actions')))), body),
      data.done ? '' : h('p', { class: 'muted' }, 'Showing the latest 100; narrow the window to see older ones.'));
    });
    const requeue = (items, text) => {
      confirmArea.replaceChildren(confirmBox(text, () => guard(out, async () => {
        let total = 0;
        const byEndpoint = new Map();
        for (const d of items) byEndpoint.set(d.endpointId, [...(byEndpoint.get(d.endpointId) || []), d.msgId]);
        for (const [ep, msgIds] of byEndpoint) total += (await post(`${appPath(app)}/dead-letter/requeue`, { endpointId: ep, msgIds })).requeued;
        confirmArea.replaceChildren();
        await load();
        message(out, `Requeued ${total}.`, true);
      }), () => confirmArea.replaceChildren()));
    };
    const requeueSelected = () => {
      const picked = [...list.querySelectorAll('input[type=checkbox]:checked')].map((c) => shown[Number(c.dataset.index)]);
      if (!picked.length) { message(out, 'Select dead letters first.'); return; }
      requeue(picked, `Requeue ${picked.length} selected dead letter${picked.length === 1 ? '' : 's'}?`);
    };
    const requeueWindow = () => guard(out, async () => {
      if (!since.value && !until.value) throw new Error('give a window: since, until or both');
      let count = 0;
      let iterator = null;
      for (let n = 0; n < 40; n += 1) { // counted a page at a time, up to 10,000
        const data = await get(listPath(iterator ? { limit: '250', iterator } : { limit: '250' }));
        count += data.data.length;
        if (data.done) break;
        iterator = data.iterator;
      }
      const body = { since: since.value ? toIso(since.value) : null, until: until.value ? toIso(until.value) : null };
      if (endpoint.value) body.endpointId = endpoint.value;
      confirmArea.replaceChildren(confirmBox(`Requeue ${count} dead letter${count === 1 ? '' : 's'} failed in this window${endpoint.value ? ' for this endpoint' : ''}?`, () => guard(out, async () => {
        const done = await post(`${appPath(app)}/dead-letter/requeue`, body);
        confirmArea.replaceChildren();
        await load();
        message(out, `Requeued ${done.requeued}.`, true);
      }), () => confirmArea.replaceChildren()));
    });
    page(MODE === 'portal' ? 'Dead letters' : `Dead letters of ${app}`, tabs(app, 'Dead letters'),
      h('form', { class: 'inline', 'aria-label': 'Filter dead letters', onsubmit: (ev) => { ev.preventDefault(); load(); } },
        h('div', {}, le, endpoint), h('div', {}, h('label', { for: 'd-since' }, 'Failed since'), since),
        h('div', {}, h('label', { for: 'd-until' }, 'Failed until'), until), h('button', { type: 'submit' }, 'Show')),
      canWrite() ? h('div', { class: 'pager' },
        h('button', { type: 'button', onclick: requeueSelected }, 'Requeue selected'),
        h('button', { type: 'button', onclick: requeueWindow }, 'Requeue the window')) : '',
      confirmArea, out, list);
    await load();
  }

  // ---- routing -----------------------------------------------------------------------------

  function parts() {
    const path = location.hash.replace(/^#\/?/, '').split('?')[0];
    return path.split('/').filter(Boolean).map(decodeURIComponent);
  }

  async function route() {
    renderNav();
    let p = parts();
    if (MODE === 'portal') {
      if (!S.token) return;
      p = ['apps', S.appId, ...p];
    } else if (!S.csrf) {
      return;
    }
    try {
      if (p.length === 0) return await overviewPage();
      if (p[0] === 'apps' && p.length === 1) return await appsPage();
      if (p[0] === 'messages' && p.length === 1) return await messagesPage(S.appId);
      const app = p[1];
      if (p.length === 2) return await appPage(app);
      if (p[2] === 'endpoints' && p[3]) return await endpointPage(app, p[3]);
      if (p[2] === 'messages' && p[3]) return await messagePage(app, p[3]);
      if (p[2] === 'messages') return await messagesPage(app);
      if (p[2] === 'dead-letters') return await deadLettersPage(app);
      page('Not found', h('p', {}, 'No such page.'));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return; // call() showed why
      page('Something went wrong', h('p', { class: 'error', role: 'alert' }, problem(err)));
    }
  }

  // ---- start -------------------------------------------------------------------------------

  let brandName = 'Webhooks';

  async function startConsole() {
    try {
      const session = await call('GET', '/console/session');
      S.csrf = session.csrfToken;
      S.scope = session.scope;
      S.appId = session.appId;
    } catch (_err) {
      showLogin(null);
      return;
    }
    await route();
  }

  async function startPortal() {
    try {
      const brand = await get('/portal/brand.json');
      brandName = brand.name;
      document.getElementById('brand-name').textContent = brand.name;
      document.documentElement.style.setProperty('--primary', brand.primaryColor);
      if (brand.logoUrl) {
        const logo = document.getElementById('logo');
        logo.src = brand.logoUrl;
        logo.alt = `${brand.name} logo`;
        logo.hidden = false;
      }
    } catch (_err) { /* the defaults stay */ }
    // The link's fragment: #key=<one-time token>&app=<app id>. Used once, then gone from the
    // address bar and history; the session token lives in this page's memory only.
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
    const key = fragment.get('key');
    const app = fragment.get('app');
    history.replaceState(null, '', `${location.pathname}#/`);
    if (!key || !app) {
      page('This portal link is not valid', h('p', {}, 'Open the portal from your product again to get a new link.'));
      return;
    }
    try {
      const session = await call('POST', `/api/v1/app/${enc(app)}/portal-session`, {}, { Authorization: `Bearer ${key}` });
      S.token = session.token;
      S.appId = session.appId;
      S.scope = session.scope;
    } catch (err) {
      page('This portal link has expired or was already used',
        h('p', { role: 'alert' }, 'Open the portal from your product again to get a new link. ', `(${problem(err)})`));
      return;
    }
    window.addEventListener('hashchange', route);
    await route();
  }

  // The skip link moves focus to the content; as a plain #main link it would be a route.
  document.querySelector('.skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });

  if (MODE === 'portal') {
    startPortal();
  } else {
    window.addEventListener('hashchange', route);
    startConsole();
  }
})();
