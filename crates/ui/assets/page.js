// The dspans trace viewer: the trace list (#/?q=...) and a trace's
// waterfall (#/trace/ID). Data comes from the viewer's server (/api/...),
// or, in a snapshot written by `dspans view --html`, from the JSON embedded
// in the page. With a server the page waits on /api/version and draws
// again when traces change; running spans grow between changes.
(function () {
  'use strict';

  const PAGE_SIZE = 50;
  const FIRST_ROWS = 300;
  const SLICE_ROWS = 2000;
  const main = document.getElementById('main');
  const statusLine = document.getElementById('status');
  const searchBox = document.getElementById('q');
  const errorsBox = document.getElementById('errors');
  const sortBox = document.getElementById('sort');
  const embedded = JSON.parse(document.getElementById('dspans-data').textContent);

  const view = { trace: null, fetchedAt: 0, collapsed: new Set(), selected: null, traceId: null, drawing: 0 };

  // ---- data sources ------------------------------------------------------

  async function fetchJson(url) {
    const response = await fetch(url, { cache: 'no-store' });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(url + ': HTTP ' + response.status);
    return response.json();
  }

  // The same matching as the server's (crates/ui/src/query.rs): every
  // `key=value` word is an attribute of the trace, every other word starts
  // the trace id or is part of a name, service, instance or the subject.
  function matches(row, words, pairs) {
    return pairs.every((p) => row.pairs.includes(p)) &&
      words.every((w) => row.trace_id.startsWith(w) || row.text.includes(w));
  }

  const source = embedded ? {
    live: false,
    async list(q, errors, sort, page) {
      const all = q.toLowerCase().split(/\s+/).filter(Boolean);
      const pairs = all.filter((w) => w.includes('='));
      const words = all.filter((w) => !w.includes('='));
      const key = (r) => (sort === 'duration' ? r.end_ns - r.start_ns : r.start_ns);
      const found = embedded.list
        .filter((r) => (!errors || r.errors > 0) && matches(r, words, pairs))
        .sort((a, b) => key(b) - key(a) || (b.trace_id < a.trace_id ? -1 : 1));
      return {
        total: found.length, page, page_size: PAGE_SIZE,
        rows: found.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE),
      };
    },
    async trace(id) { return embedded.traces[id] || null; },
  } : {
    live: true,
    list(q, errors, sort, page) {
      const params = new URLSearchParams({ q, sort, page: String(page) });
      if (errors) params.set('errors', '1');
      return fetchJson('api/traces?' + params);
    },
    trace(id) { return fetchJson('api/traces/' + encodeURIComponent(id)); },
  };

  // ---- formatting --------------------------------------------------------

  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => (
      { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  function duration(ms) {
    if (ms <= 0) return '0';
    if (ms < 1) return Math.round(ms * 1000) + ' µs';
    if (ms < 1000) return (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' m ' + Math.round(s - m * 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' m';
  }

  function clock(ms) {
    const d = new Date(ms);
    return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) + ' ' +
      d.toLocaleTimeString(undefined, { hour12: false });
  }

  const colours = new Map();
  function colour(service) {
    const name = service || '(no service)';
    if (!colours.has(name)) {
      let h = 2166136261;
      for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
      // Hues from 40 to 320: red is kept for errors.
      colours.set(name, 'hsl(' + (40 + ((h >>> 0) % 280)) + ' 55% 48%)');
    }
    return colours.get(name);
  }

  function attr(list, key) {
    const found = (list || []).find((kv) => kv[0] === key);
    return found ? found[1] : '';
  }

  function instanceOf(span) {
    return attr(span.resource_attributes, 'service.instance.id') || span.host || '';
  }

  function copyButton(text) {
    return '<button type="button" class="copy" data-copy="' + esc(text) + '" title="Copy">copy</button>';
  }

  // ---- routing -----------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const trace = hash.match(/^\/trace\/([0-9a-fA-F]+)(?:\?span=([0-9a-fA-F]+))?/);
    if (trace) return { page: 'trace', id: trace[1].toLowerCase(), span: (trace[2] || '').toLowerCase() };
    const params = new URLSearchParams(hash.split('?')[1] || '');
    return {
      page: 'list',
      q: params.get('q') || '',
      errors: params.get('errors') === '1',
      sort: params.get('sort') === 'duration' ? 'duration' : 'start',
      n: Math.max(0, parseInt(params.get('page') || '0', 10) || 0),
    };
  }

  function listHash(q, errors, sort, n) {
    const params = new URLSearchParams();
    if (q) params.set('q', q);
    if (errors) params.set('errors', '1');
    if (sort !== 'start') params.set('sort', sort);
    if (n) params.set('page', String(n));
    const text = params.toString();
    return '#/' + (text ? '?' + text : '');
  }

  async function draw() {
    const r = route();
    try {
      if (r.page === 'trace') await drawTrace(r.id, r.span);
      else await drawList(r);
      if (source.live) statusLine.textContent = 'live';
      else statusLine.textContent = 'snapshot';
    } catch (error) {
      statusLine.textContent = 'cannot reach the viewer: ' + error.message;
    }
  }

  // ---- the list ----------------------------------------------------------

  async function drawList(r) {
    view.trace = null;
    view.traceId = null;
    if (document.activeElement !== searchBox) searchBox.value = r.q;
    errorsBox.checked = r.errors;
    sortBox.value = r.sort;
    const page = await source.list(r.q, r.errors, r.sort, r.n);
    if (route().page !== 'list') return;
    document.title = 'dspans traces';
    if (!page.total) {
      main.innerHTML = '<p class="empty">' + (r.q || r.errors
        ? 'No trace matches.'
        : 'No traces yet. Send OTLP to this viewer, or give it files or a store.') + '</p>';
      return;
    }
    const rows = page.rows.map((t) => {
      const flags = (t.running ? '<span class="badge running">' + t.running + ' running</span>' : '') +
        (t.orphaned ? '<span class="badge orphaned">' + t.orphaned + ' orphaned</span>' : '');
      const services = t.services.map((s) =>
        '<span class="chip" style="--c:' + colour(s) + '">' + esc(s) + '</span>').join('');
      const dur = t.running ? 'running' : duration((t.end_ns - t.start_ns) / 1e6);
      return '<tr class="trace-row' + (t.errors ? ' has-error' : '') + (t.running ? ' is-running' : '') +
        '" data-trace="' + t.trace_id + '"><td><a class="trace-title" href="#/trace/' + t.trace_id + '">' +
        esc(t.name || '(no root)') + (t.subject ? '<span class="subject">' + esc(t.subject) + '</span>' : '') +
        '</a>' + flags + '<div class="ids">' + t.trace_id + '</div></td><td>' + clock(t.start_ns / 1e6) +
        '</td><td class="num">' + dur + '</td><td class="num">' + t.spans + '</td><td class="num errors">' +
        t.errors + '</td><td>' + services + '</td></tr>';
    }).join('');
    const first = page.page * page.page_size;
    const last = Math.min(page.total, first + page.rows.length);
    main.innerHTML = '<table class="traces"><thead><tr><th>Trace</th><th>Start</th><th class="num">Duration</th>' +
      '<th class="num">Spans</th><th class="num">Errors</th><th>Services</th></tr></thead><tbody>' + rows +
      '</tbody></table><div class="pager"><button type="button" data-page="' + (page.page - 1) + '"' +
      (page.page ? '' : ' disabled') + '>Newer</button><span class="count">' + (first + 1) + '–' + last +
      ' of ' + page.total + ' traces</span><button type="button" data-page="' + (page.page + 1) + '"' +
      (last < page.total ? '' : ' disabled') + '>Older</button></div>';
  }

  // ---- a trace -----------------------------------------------------------

  async function drawTrace(id, span) {
    const trace = await source.trace(id);
    if (route().page !== 'trace' || route().id !== id) return;
    if (view.traceId !== id || (span && view.linkedSpan !== span)) {
      view.collapsed = new Set();
      view.selected = span || null;
      view.linkedSpan = span;
      view.traceId = id;
    }
    if (!trace) {
      main.innerHTML = '<p class="empty">No trace ' + esc(id) + ' here. <a href="#/">All traces</a></p>';
      return;
    }
    view.trace = trace;
    view.fetchedAt = Date.now();
    const errors = trace.spans.filter((s) => s.error).length;
    const services = [...new Set(trace.spans.map((s) => s.service || ''))].filter(Boolean);
    // A colour per service; with one service, a colour per instance.
    view.colourBy = services.length > 1 ? (s) => s.service : (s) => instanceOf(s) || s.service;
    const keys = [...new Set(trace.spans.map(view.colourBy))].filter(Boolean);
    document.title = trace.name + (trace.subject ? ' · ' + trace.subject : '') + ' · dspans';
    const total = Math.max(trace.dur_ms, 0.001);
    // The first screen's rows at once, the others in slices after it, so
    // that a trace of 10,000 spans shows without waiting for all of them.
    const first = trace.spans.slice(0, FIRST_ROWS).map((s, i) => spanRow(s, i, total)).join('');
    main.innerHTML = '<div class="trace-head" data-trace="' + trace.trace_id + '"><a href="#/">← All traces</a>' +
      '<h1>' + esc(trace.name || '(no root)') + (trace.subject ? '<span class="subject">' + esc(trace.subject) +
      '</span>' : '') + '</h1><div class="meta"><span class="ids">trace ' + trace.trace_id + copyButton(trace.trace_id) +
      '</span><span>' + clock(trace.start_ms) + '</span><span id="trace-dur">' + duration(trace.dur_ms) +
      '</span><span>' + trace.spans.length + ' spans</span>' +
      (errors ? '<span class="badge error">' + errors + ' errors</span>' : '') +
      (trace.running ? '<span class="badge running">' + trace.running + ' running</span>' : '') +
      '</div><div class="legend">' + keys.map((s) => '<span class="chip" style="--c:' + colour(s) + '">' +
      esc(s) + '</span>').join('') + '</div></div><div class="layout"><div class="waterfall">' +
      '<div class="axis"><div></div><div class="scale"></div></div>' + first +
      '</div><aside id="details" hidden></aside></div>';
    const scale = main.querySelector('.axis .scale');
    scale.innerHTML = ticks(total);
    const drawing = ++view.drawing;
    const waterfall = main.querySelector('.waterfall');
    let next = FIRST_ROWS;
    const more = () => {
      if (drawing !== view.drawing) return;
      if (next < trace.spans.length) {
        const slice = trace.spans.slice(next, next + SLICE_ROWS)
          .map((s, i) => spanRow(s, next + i, total)).join('');
        waterfall.insertAdjacentHTML('beforeend', slice);
        next += SLICE_ROWS;
        setTimeout(more, 0);
        return;
      }
      waterfall.dataset.complete = 'true';
      if (view.collapsed.size) applyCollapsed();
      if (view.selected) showDetails(view.selected);
    };
    // After the first screen is shown.
    setTimeout(more, 0);
  }

  // Where a bar and its duration go, in % of the trace's `total` ms.
  function place(s, dur, total) {
    const left = (s.at_ms / total) * 100;
    const width = Math.max((dur / total) * 100, 0.15);
    const rightSide = left + width > 80;
    return {
      bar: 'left:' + left + '%;width:' + width + '%',
      label: rightSide ? 'right:calc(' + (100 - left) + '% + 4px)' : 'left:calc(' + (left + width) + '% + 4px)',
      text: duration(dur) + (s.running ? ' so far' : ''),
    };
  }

  function spanRow(s, i, total) {
    const at = place(s, s.dur_ms, total);
    const state = s.orphaned ? 'orphaned' : s.running ? 'running' : 'finished';
    const classes = ['span-row', state];
    if (s.error) classes.push('error');
    if (s.row.missing_parent) classes.push('missing-parent');
    const instance = instanceOf(s);
    const flags = (s.row.missing_parent ? '<span class="flag">parent missing</span>' : '') +
      (s.row.duplicate ? '<span class="flag">repeated id</span>' : '') +
      (s.running ? '<span class="flag state ' + state + '">' + state + '</span>' : '');
    return '<div class="' + classes.join(' ') + '" data-i="' + i + '" data-span="' + s.span_id +
      '" data-name="' + esc(s.name) + '" data-depth="' + s.row.depth + '" data-state="' + state +
      '" tabindex="0" style="--c:' + colour(view.colourBy(s)) + '"><div class="label" style="padding-left:' +
      (4 + s.row.depth * 14) + 'px"><button type="button" class="toggle' + (s.children ? '' : ' leaf') +
      '" aria-expanded="true" aria-label="Collapse">▾</button><span class="name">' + esc(s.name) + '</span>' +
      (s.service ? '<span class="svc">' + esc(s.service) + '</span>' : '') +
      (instance ? '<span class="inst">' + esc(instance) + '</span>' : '') + flags +
      '</div><div class="lane"><div class="bar" style="' + at.bar + '"></div><span class="dur" style="' +
      at.label + '">' + at.text + '</span></div></div>';
  }

  // Positions the bars, durations and axis ticks; running spans grow with
  // the time since the trace was fetched.
  function layout() {
    const trace = view.trace;
    if (!trace) return;
    const grown = trace.running ? Date.now() - view.fetchedAt : 0;
    const total = Math.max(trace.dur_ms + grown, 0.001);
    const durLabel = document.getElementById('trace-dur');
    if (durLabel) durLabel.textContent = duration(total) + (trace.running ? ' so far' : '');
    const rows = main.querySelectorAll('.span-row');
    rows.forEach((row) => {
      const s = trace.spans[row.dataset.i];
      const at = place(s, s.running ? s.dur_ms + grown : s.dur_ms, total);
      row.querySelector('.bar').style.cssText = at.bar;
      const label = row.querySelector('.dur');
      label.style.cssText = at.label;
      label.textContent = at.text;
    });
    const scale = main.querySelector('.axis .scale');
    if (scale) scale.innerHTML = ticks(total);
  }

  function ticks(total) {
    const raw = total / 6;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((v) => v >= raw) || raw;
    let html = '';
    for (let t = 0; t <= total + 1e-9; t += step) {
      html += '<div class="tick" style="left:' + (t / total) * 100 + '%">' + duration(t) + '</div>';
    }
    return html;
  }

  function applyCollapsed() {
    let hideBelow = Infinity;
    main.querySelectorAll('.span-row').forEach((row) => {
      const depth = Number(row.dataset.depth);
      if (depth <= hideBelow) hideBelow = Infinity;
      row.hidden = depth > hideBelow;
      const collapsed = view.collapsed.has(row.dataset.span);
      const toggle = row.querySelector('.toggle');
      toggle.textContent = collapsed ? '▸' : '▾';
      toggle.setAttribute('aria-expanded', String(!collapsed));
      toggle.setAttribute('aria-label', collapsed ? 'Expand' : 'Collapse');
      if (!row.hidden && collapsed && hideBelow === Infinity) hideBelow = depth;
    });
  }

  function table(pairs) {
    if (!pairs || !pairs.length) return '<p class="empty">none</p>';
    return '<table>' + pairs.map((kv) => '<tr><td class="k">' + esc(kv[0]) + '</td><td>' + esc(kv[1]) +
      '</td></tr>').join('') + '</table>';
  }

  function showDetails(spanId) {
    const pane = document.getElementById('details');
    const trace = view.trace;
    if (!pane || !trace) return;
    main.querySelectorAll('.span-row.selected').forEach((r) => r.classList.remove('selected'));
    const s = trace.spans.find((x) => x.span_id === spanId);
    if (!s) {
      pane.hidden = true;
      return;
    }
    const row = main.querySelector('.span-row[data-span="' + spanId + '"]');
    if (row) row.classList.add('selected');
    const state = s.orphaned ? 'orphaned: its owner is gone' : s.running ? 'running' : s.error ? 'error' : 'finished';
    const facts = [
      ['state', state],
      ['status', s.status_code.replace('STATUS_CODE_', '') + (s.status_message ? ': ' + s.status_message : '')],
      ['kind', s.kind.replace('SPAN_KIND_', '').toLowerCase()],
      ['start', '+' + duration(s.at_ms)],
      ['duration', s.running ? 'running' : duration(s.dur_ms)],
    ];
    if (s.owner) facts.push(['owner', s.owner]);
    if (s.scope) facts.push(['scope', s.scope]);
    const links = (s.links || []).map((l) => {
      const open = trace.linked[l.trace_id]
        ? '<a class="link-open" href="#/trace/' + l.trace_id + '?span=' + l.span_id + '">open</a>'
        : '<span class="ids">trace not here</span>';
      return '<tr><td class="ids">' + l.trace_id + '<br>' + l.span_id + '</td><td>' + open +
        (l.attributes.length ? table(l.attributes) : '') + '</td></tr>';
    }).join('');
    const events = (s.events || []).map((e) => '<tr><td class="k">+' +
      duration(Math.max(0, e.time_ns / 1e6 - trace.start_ms)) + '</td><td>' + esc(e.name) +
      (e.attributes.length ? table(e.attributes) : '') + '</td></tr>').join('');
    pane.innerHTML = '<h2>' + esc(s.name) + '</h2>' +
      '<div class="ids">span ' + s.span_id + copyButton(s.span_id) + '</div>' +
      (s.parent_span_id ? '<div class="ids">parent ' + s.parent_span_id + copyButton(s.parent_span_id) +
        (s.row.missing_parent ? ' <span class="flag">missing</span>' : '') + '</div>' : '') +
      '<div class="ids">trace ' + s.trace_id + copyButton(s.trace_id) + '</div>' +
      table(facts) + '<h3>Attributes</h3>' + table(s.attributes) +
      '<h3>Events</h3>' + (events ? '<table>' + events + '</table>' : '<p class="empty">none</p>') +
      '<h3>Links</h3>' + (links ? '<table>' + links + '</table>' : '<p class="empty">none</p>') +
      '<h3>Resource</h3>' + table(s.resource_attributes);
    pane.hidden = false;
  }

  // ---- events ------------------------------------------------------------

  main.addEventListener('click', (event) => {
    const copy = event.target.closest('.copy');
    if (copy) {
      const text = copy.dataset.copy;
      const done = () => { copy.textContent = 'copied'; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, () => { copy.textContent = 'copy failed'; });
      } else {
        copy.textContent = text;
      }
      return;
    }
    const pageButton = event.target.closest('.pager button');
    if (pageButton) {
      const r = route();
      location.hash = listHash(r.q, r.errors, r.sort, Number(pageButton.dataset.page));
      return;
    }
    const toggle = event.target.closest('.toggle');
    const row = event.target.closest('.span-row');
    if (toggle && row) {
      const id = row.dataset.span;
      if (view.collapsed.has(id)) view.collapsed.delete(id);
      else view.collapsed.add(id);
      applyCollapsed();
      return;
    }
    if (row) {
      view.selected = view.selected === row.dataset.span ? null : row.dataset.span;
      showDetails(view.selected);
    }
  });

  main.addEventListener('keydown', (event) => {
    const row = event.target.closest('.span-row');
    if (row && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      view.selected = row.dataset.span;
      showDetails(view.selected);
    }
  });

  let typing = null;
  function searchChanged() {
    clearTimeout(typing);
    typing = setTimeout(() => {
      location.hash = listHash(searchBox.value.trim(), errorsBox.checked, sortBox.value, 0);
    }, 150);
  }
  document.getElementById('search').addEventListener('submit', (e) => { e.preventDefault(); searchChanged(); });
  searchBox.addEventListener('input', searchChanged);
  errorsBox.addEventListener('change', searchChanged);
  sortBox.addEventListener('change', searchChanged);
  window.addEventListener('hashchange', draw);

  // ---- live --------------------------------------------------------------

  async function watch() {
    let version = null;
    for (;;) {
      try {
        const answer = await fetchJson('api/version' + (version === null ? '' : '?after=' + version));
        if (answer.version !== version) {
          const first = version === null;
          version = answer.version;
          if (!first) await draw();
        }
      } catch (error) {
        statusLine.textContent = 'disconnected; trying again';
        await new Promise((done) => setTimeout(done, 2000));
      }
    }
  }

  draw().then(() => {
    if (source.live) watch();
  });
  setInterval(() => {
    if (view.trace && view.trace.running) layout();
  }, 500);
})();
