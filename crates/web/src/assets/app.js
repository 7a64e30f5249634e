// Carewoven screens: the live D2A board, a person's shared care record, a service's referral
// inbox and a caseload. Plain DOM, no framework. The bearer token lives in sessionStorage and
// goes in the Authorization header only; addresses carry person ids (UUIDs) and codes, never
// names, NHS numbers or free text. Text from answers is set with textContent only.
'use strict';
(() => {
  const TOKEN_KEY = 'carewoven.token';
  const $ = (selector) => document.querySelector(selector);

  // ---- small helpers -------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const words = (s) => {
    const t = String(s || '').replace(/_/g, ' ').toLowerCase().trim();
    return t ? t[0].toUpperCase() + t.slice(1) : '';
  };
  const enumLabel = (value, prefix) => words(String(value || '').replace(prefix, ''));
  const pathwayLabel = (p) => (!p || p === 'PATHWAY_UNSPECIFIED' ? 'Not assigned' : 'Pathway ' + p.replace('PATHWAY_', ''));
  const reasonLabel = (r) => enumLabel(r, 'DELAY_REASON_').replace(/^Pathway (\d)/, 'Pathway $1:');
  const when = (t) => (t ? new Date(t).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' }) : '');
  const list = (xs) => (Array.isArray(xs) ? xs : []);
  const sleep = (ms, signal) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
  function personName(p) {
    const name = [p.given_name, p.family_name].filter(Boolean).join(' ');
    return name || 'Person ' + String(p.person_id || '').slice(0, 8);
  }
  function facts(pairs) {
    const dl = el('dl', { class: 'facts' });
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
      dl.append(el('dt', { text: k }), el('dd', {}, v));
    }
    return dl;
  }
  let announced = 0;
  function announce(text) {
    const now = Date.now();
    if (now - announced < 2000) return;
    announced = now;
    $('#announce').textContent = text;
  }

  // ---- sign-in ---------------------------------------------------------------------------
  function takeFragmentToken() {
    // The development link carries the token in the fragment, which is never sent to the
    // server; move it to this tab's storage and out of the address and history at once.
    const hash = location.hash;
    if (hash.startsWith('#token=')) {
      const t = decodeURIComponent(hash.slice('#token='.length)).trim();
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      history.replaceState(null, '', location.pathname);
    }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  function claims() {
    try {
      const part = (token() || '').split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part));
    } catch (_) {
      return {};
    }
  }
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopBoard();
    $('#signin-error').textContent = message || '';
    route();
  }

  class ApiError extends Error {
    constructor(status, error) {
      super((error && error.message) || 'the request failed (' + status + ')');
      this.status = status;
      this.code = error && error.code;
      this.field = error && error.field;
    }
  }
  async function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({ Authorization: 'Bearer ' + token() }, opts.headers || {});
    const response = await fetch(path, Object.assign({}, opts, {
      headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
    }));
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (response.status === 401) {
      signOut('Your token was refused: ' + ((body && body.error && body.error.message) || 'sign in again'));
      throw new ApiError(401, body && body.error);
    }
    if (!response.ok) throw new ApiError(response.status, body && body.error);
    return body;
  }

  // ---- screens and navigation ------------------------------------------------------------
  function show(name) {
    for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== name + '-screen';
    for (const a of document.querySelectorAll('a[data-route]')) {
      if (a.getAttribute('href') === location.pathname) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const signedIn = Boolean(token());
    $('#sign-out').hidden = !signedIn;
    $('#who').textContent = signedIn && claims().sub ? 'Signed in as ' + claims().sub : '';
  }
  function go(path) {
    history.pushState(null, '', path);
    route();
    $('#main').focus();
  }
  function route() {
    const path = location.pathname;
    if (!token()) {
      stopBoard();
      show('signin');
      document.title = 'Sign in - Carewoven';
      return;
    }
    const record = path.match(/^\/record\/([0-9a-fA-F-]{36})$/);
    if (path !== '/') stopBoard();
    if (record) showRecord(record[1]);
    else if (path === '/inbox') showInbox();
    else if (path === '/caseload') showCaseload();
    else showBoard();
  }
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-route]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    go(a.getAttribute('href'));
  });
  window.addEventListener('popstate', route);

  // ---- the board -------------------------------------------------------------------------
  const board = { entries: new Map(), controller: null, attempt: 0, live: false, sort: { key: 'days', dir: 'descending' } };

  function showBoard() {
    show('board');
    document.title = 'Discharge board - Carewoven';
    if (!board.controller) watch();
    renderBoard();
  }
  function stopBoard() {
    if (board.controller) board.controller.abort();
    board.controller = null;
  }
  function setLink(text, live) {
    const badge = $('#board-link');
    badge.textContent = text;
    badge.className = live ? 'badge live' : 'badge';
  }

  async function watch() {
    const controller = new AbortController();
    board.controller = controller;
    const { signal } = controller;
    while (!signal.aborted) {
      try {
        setLink('Connecting', false);
        const response = await fetch('/api/board/watch', {
          headers: { Authorization: 'Bearer ' + token() }, signal, cache: 'no-store', credentials: 'omit',
        });
        if (response.status === 401) {
          const body = await response.json().catch(() => null);
          signOut('Your token was refused: ' + ((body && body.error && body.error.message) || 'sign in again'));
          return;
        }
        if (!response.ok) {
          const body = await response.json().catch(() => null);
          throw new ApiError(response.status, body && body.error);
        }
        $('#board-error').textContent = '';
        await readBoard(response.body.getReader());
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError) $('#board-error').textContent = e.message;
      }
      if (signal.aborted) return;
      board.live = false;
      const delay = Math.min(30000, 1000 * 2 ** board.attempt);
      board.attempt += 1;
      setLink('Reconnecting in ' + Math.round(delay / 1000) + ' s', false);
      await sleep(delay, signal);
    }
  }

  async function readBoard(reader) {
    const decoder = new TextDecoder();
    let buffer = '';
    let pending = new Map();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let at;
      while ((at = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, at).trim();
        buffer = buffer.slice(at + 1);
        if (!line) continue;
        const update = JSON.parse(line);
        if (update.error) {
          $('#board-error').textContent = update.error.message;
          return;
        }
        if (update.upsert) {
          const entry = update.upsert;
          if (pending) pending.set(entry.episode_id, entry);
          else {
            entry.changed = true;
            board.entries.set(entry.episode_id, entry);
            renderBoard();
            announce('Board updated: ' + words(entry.status) + ' (' + $('#board-count').textContent + ')');
          }
        } else if (update.removed_episode_id) {
          if (pending) pending.delete(update.removed_episode_id);
          else {
            board.entries.delete(update.removed_episode_id);
            renderBoard();
            announce('Someone left the board');
          }
        } else if (update.snapshot_complete) {
          board.entries = pending;
          pending = null;
          board.live = true;
          board.attempt = 0;
          setLink('Live', true);
          renderBoard();
        }
      }
    }
  }

  function reasonsOf(entry) {
    const notes = list(entry.delay_notes);
    if (notes.length) return notes.map((n) => ({ reason: n.reason, note: n.note, organisation: n.organisation }));
    return list(entry.delay_reasons).map((reason) => ({ reason }));
  }

  function refreshOptions(select, values, label) {
    const chosen = select.value;
    const first = select.options[0];
    select.replaceChildren(first, ...[...values].sort().map((v) => el('option', { value: v, text: label(v) })));
    select.value = values.has(chosen) ? chosen : '';
  }

  function renderBoard() {
    const all = [...board.entries.values()];
    refreshOptions($('#filter-site'), new Set(all.map((e) => e.site).filter(Boolean)), (s) => s);
    refreshOptions($('#filter-reason'), new Set(all.flatMap((e) => reasonsOf(e).map((r) => r.reason))), reasonLabel);
    const site = $('#filter-site').value;
    const pathway = $('#filter-pathway').value;
    const status = $('#filter-status').value;
    const reason = $('#filter-reason').value;
    const shown = all.filter((e) => (!site || e.site === site)
      && (!pathway || (e.pathway || 'PATHWAY_UNSPECIFIED') === pathway)
      && (!status || e.status === status)
      && (!reason || reasonsOf(e).some((r) => r.reason === reason)));
    const { key, dir } = board.sort;
    const sign = dir === 'ascending' ? 1 : -1;
    shown.sort((a, b) => {
      const byDays = (a.days_delayed || 0) - (b.days_delayed || 0);
      const byDrd = String(a.discharge_ready_date).localeCompare(String(b.discharge_ready_date));
      const primary = key === 'days' ? byDays : byDrd;
      return sign * (primary || (key === 'days' ? -byDrd : byDays)) || String(a.episode_id).localeCompare(String(b.episode_id));
    });
    for (const th of document.querySelectorAll('#board th[data-sort]')) {
      th.setAttribute('aria-sort', th.dataset.sort === key ? dir : 'none');
    }
    $('#board-count').textContent = shown.length + ' of ' + all.length + (all.length === 1 ? ' person' : ' people') + ' shown';
    $('#board tbody').replaceChildren(...shown.map(boardRow));
  }

  function boardRow(e) {
    const person = el('th', { scope: 'row', 'data-col': 'person' },
      el('a', { href: '/record/' + e.person_id, 'data-route': true, text: personName(e) }));
    if (e.nhs_number) person.append(el('br'), el('span', { class: 'note', text: 'NHS ' + e.nhs_number }));
    const reasons = reasonsOf(e);
    const hours = e.status === 'discharged' && e.discharged_at ? String(e.hours_since_discharge) : '';
    return el('tr', { 'data-episode': e.episode_id, class: e.changed ? 'changed' : undefined },
      person,
      el('td', { 'data-col': 'site' }, [e.site, e.ward].filter(Boolean).join(', ')),
      el('td', { 'data-col': 'pathway' }, pathwayLabel(e.pathway)),
      el('td', { 'data-col': 'status' }, words(e.status)),
      el('td', { 'data-col': 'drd' }, e.discharge_ready_date || ''),
      el('td', { 'data-col': 'days', class: 'num' }, String(e.days_delayed || 0)),
      el('td', { 'data-col': 'reasons' }, reasons.length
        ? el('ul', { class: 'reasons' }, reasons.map((r) => el('li', {}, reasonLabel(r.reason),
          r.note ? el('span', { class: 'note' }, ': ' + r.note) : null)))
        : ''),
      el('td', { 'data-col': 'service' }, e.service || e.handover_organisation || ''),
      el('td', { 'data-col': 'hours', class: 'num' }, hours),
      el('td', { 'data-col': 'home-assessment' }, e.home_assessment_completed_on
        ? 'Completed ' + e.home_assessment_completed_on : (e.home_assessment_due || '')));
  }

  $('#board-filters').addEventListener('change', renderBoard);
  $('#board-filters').addEventListener('submit', (e) => e.preventDefault());
  for (const [button, key, first] of [['#sort-days', 'days', 'descending'], ['#sort-drd', 'drd', 'ascending']]) {
    $(button).addEventListener('click', () => {
      const s = board.sort;
      board.sort = s.key === key
        ? { key, dir: s.dir === 'ascending' ? 'descending' : 'ascending' }
        : { key, dir: first };
      renderBoard();
      announce('Sorted by ' + (key === 'days' ? 'days delayed' : 'discharge ready date') + ', ' + board.sort.dir);
    });
  }

  // ---- a person's record -----------------------------------------------------------------
  async function showRecord(id) {
    show('record');
    document.title = 'Care record - Carewoven';
    $('#record-title').textContent = 'Shared care record';
    $('#record-error').textContent = '';
    const root = $('#record');
    root.replaceChildren(el('p', { text: 'Loading...' }));
    let record;
    try {
      record = await api('/api/record/' + encodeURIComponent(id));
    } catch (e) {
      root.replaceChildren();
      $('#record-error').textContent = e.message;
      return;
    }
    const p = record.profile || {};
    $('#record-title').textContent = personName({ ...p, person_id: record.person_id });
    root.replaceChildren(...recordSections(record));
    const access = el('section', { 'aria-labelledby': 'access-title' }, el('h2', { id: 'access-title', text: 'Who accessed this record' }));
    root.append(access);
    try {
      const page = await api('/api/record/' + encodeURIComponent(id) + '/access');
      access.append(accessTable(list(page.entries).map((x) => x.event).filter(Boolean), page.more));
    } catch (e) {
      access.append(el('p', { class: 'error', text: e.message }));
    }
  }

  function section(id, title, ...body) {
    return el('section', { 'aria-labelledby': id }, el('h2', { id, text: title }), ...body);
  }
  function table(caption, headers, rows) {
    if (!rows.length) return el('p', { text: 'None recorded.' });
    return el('div', { class: 'scroll', role: 'region', tabindex: '0', 'aria-label': caption },
      el('table', {}, el('caption', { text: caption }),
        el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => (i === 0
          ? el('th', { scope: 'row' }, c) : el('td', {}, c))))))));
  }

  function recordSections(r) {
    const p = r.profile || {};
    const out = [];
    const withheld = list(r.withheld_classes).map((c) => enumLabel(c, 'DATA_CLASS_'));
    if (withheld.length) out.push(el('p', { class: 'note', text: 'Not shown to your organisation: ' + withheld.join(', ') + '.' }));
    out.push(section('profile-title', 'Profile and what matters to them', facts([
      ['NHS number', p.nhs_number], ['Date of birth', p.date_of_birth], ['Contact', p.contact],
      ['What matters to them', p.what_matters], ['Communication needs', p.communication_needs],
      ['Registered GP', p.registered_gp],
      ['Carers', list(p.carers).map((c) => [c.name, c.relationship, c.contact].filter(Boolean).join(', ')).join('; ')],
      ['Corrections', list(r.corrections).map((c) => words(list(c.fields).join(', ')) + ' by ' + c.organisation + ' ' + when(c.recorded_at) + (c.reason ? ' (' + c.reason + ')' : '')).join('; ')],
    ])));
    const plan = r.care_plan;
    const planBody = [];
    if (plan && plan.plan) {
      planBody.push(facts([['Version', String(plan.version)], ['Review date', plan.plan.review_date]]),
        el('h3', { text: 'Goals' }), el('ul', {}, list(plan.plan.goals).map((g) => el('li', { text: g }))),
        table('Activities', ['Activity', 'Responsible organisation'],
          list(plan.plan.activities).map((a) => [a.description, a.responsible_organisation])),
        table('Plan versions', ['Version', 'Agreed or revised by', 'When', 'Reason'],
          list(plan.history).map((v) => [String(v.version), v.organisation, when(v.recorded_at), v.reason || 'First agreed version'])));
    } else planBody.push(el('p', { text: 'No care plan agreed.' }));
    out.push(section('plan-title', 'Care plan', ...planBody));
    const team = r.care_team || {};
    const coordinator = team.coordinator && team.coordinator.organisation
      ? [team.coordinator.organisation, team.coordinator.practitioner].filter(Boolean).join(' / ') : 'None named';
    out.push(section('team-title', 'Care team and coordinator', facts([['Care coordinator', coordinator]]),
      table('Care team', ['Member', 'Role', 'Since'], list(team.members).map((m) => [
        [m.member && m.member.organisation, m.member && m.member.practitioner].filter(Boolean).join(' / '),
        enumLabel(m.role, 'CARE_TEAM_ROLE_'), m.since]))));
    out.push(section('referrals-title', 'Referrals', table('Referrals', ['To service', 'From', 'Priority', 'Status', 'Reason for referral', 'Decisions'],
      list(r.referrals).map((x) => {
        const ref = x.referral || {};
        const history = list(x.history);
        const decisions = history.length
          ? el('ul', { class: 'reasons' }, history.map((h) => el('li', {}, words(h.status) + ' by ' + h.organisation + ' ' + when(h.at) + (h.reason ? ': ' + h.reason : ''))))
          : (x.reason ? words(x.status) + ': ' + x.reason : '');
        return [ref.to_service, ref.from_organisation, enumLabel(ref.priority, 'PRIORITY_'), words(x.status), ref.reason, decisions];
      }))));
    out.push(section('assessments-title', 'Assessments', table('Assessments', ['Kind', 'Status', 'Contributions', 'Findings', 'Eligibility'],
      list(r.assessments).map((a) => {
        const f = a.findings || {};
        const contributions = list(a.contributions);
        return [enumLabel(a.request && a.request.kind, 'ASSESSMENT_KIND_'), words(a.status),
          contributions.length
            ? el('ul', { class: 'reasons' }, contributions.map((c) => el('li', {}, c.organisation + ': ' + c.summary)))
            : list(a.contributors).join(', '),
          [f.summary, f.wellbeing_impact].filter(Boolean).join(' '),
          a.eligible === undefined || a.eligible === null ? '' : (a.eligible ? 'Eligible' : 'Not eligible')
            + (list(a.eligibility_reasons).length ? ': ' + list(a.eligibility_reasons).join('; ') : '')];
      }))));
    out.push(section('episodes-title', 'Discharge episodes', table('Discharge episodes', ['Site', 'Status', 'Discharge ready date', 'Pathway', 'Delay reasons', 'Service', 'Home assessment'],
      list(r.discharge_episodes).map((e) => [[e.site, e.ward].filter(Boolean).join(', '), words(e.status), e.discharge_ready_date,
        pathwayLabel(e.pathway), reasonsOf(e).map((x) => reasonLabel(x.reason) + (x.note ? ': ' + x.note : '')).join('; '),
        e.service || e.handover_organisation,
        e.home_assessment_completed_on ? 'Completed ' + e.home_assessment_completed_on + (e.home_assessment_outcome ? ': ' + e.home_assessment_outcome : '') : (e.home_assessment_due ? 'Due ' + e.home_assessment_due : '')]))));
    out.push(section('meetings-title', 'Meetings and actions', ...list(r.meetings).map((m) => {
      const rec = m.meeting || {};
      const done = new Set(list(m.completed_actions));
      const completions = new Map(list(m.completions).map((c) => [c.action, c]));
      return el('div', { class: 'card' }, el('h3', { text: 'Meeting ' + when(rec.held_at) }),
        facts([['Attendees', list(rec.attendees).join(', ')], ['Decisions', list(rec.decisions).join('; ')]]),
        table('Actions', ['Action', 'Owner', 'Due', 'Done'], list(rec.actions).map((a, i) => {
          const c = completions.get(i + 1);
          return [a.description, a.owner, a.due_by, done.has(i + 1) ? 'Done' + (c ? ' by ' + c.organisation + (c.note ? ': ' + c.note : '') : '') : 'Open'];
        })));
    }), r.meetings && r.meetings.length ? null : el('p', { text: 'None recorded.' })));
    out.push(section('feedback-title', 'Feedback', table('Feedback', ['From', 'When', 'Rating', 'Feedback'],
      list(r.feedback).map((f) => {
        const fb = f.feedback || {};
        return [fb.anonymous ? 'Anonymous' : enumLabel(fb.source, 'FEEDBACK_SOURCE_'), when(f.recorded_at), fb.rating ? fb.rating + ' of 5' : '', fb.text];
      }))));
    return out;
  }

  function accessTable(events, more) {
    const rows = events.map((a) => [when(a.at), a.organisation, enumLabel(a.action, 'AUDIT_ACTION_'),
      enumLabel(a.outcome, 'AUDIT_OUTCOME_') + (a.reason ? ' (' + a.reason + ')' : ''), enumLabel(a.purpose, 'PURPOSE_'), a.detail]);
    const t = table('Accesses, oldest first', ['When', 'Organisation', 'Action', 'Outcome', 'Purpose', 'What'], rows);
    return more ? el('div', {}, t, el('p', { class: 'note', text: 'Only the first 1,000 accesses are shown.' })) : t;
  }

  // ---- referral inbox --------------------------------------------------------------------
  function showInbox() {
    show('inbox');
    document.title = 'Referral inbox - Carewoven';
    const input = $('#inbox-service');
    if (!input.value && claims().sub) input.value = claims().sub;
    loadInbox(0);
  }
  async function loadInbox(position) {
    const service = $('#inbox-service').value.trim();
    $('#inbox-error').textContent = '';
    if (!service) return;
    const query = new URLSearchParams({ service });
    const status = $('#inbox-status').value;
    if (status) query.set('status', status);
    try {
      const headers = position ? { 'Carewoven-Min-Log-Position': String(position) } : {};
      const page = await api('/api/inbox?' + query, { headers });
      $('#inbox tbody').replaceChildren(...list(page.entries).map(inboxRow));
      $('#inbox-caption').textContent = 'Referrals to ' + service + ', most urgent and oldest first (' + list(page.entries).length + ')';
    } catch (e) {
      $('#inbox tbody').replaceChildren();
      $('#inbox-error').textContent = e.message;
    }
  }
  function inboxRow(x) {
    const reasonId = 'reason-' + x.referral_id;
    const decide = async (decision) => {
      $('#inbox-message').textContent = '';
      $('#inbox-error').textContent = '';
      try {
        const reply = await api('/api/referrals/' + x.person_id + '/' + x.referral_id + '/' + decision, {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ reason: document.getElementById(reasonId).value }),
        });
        $('#inbox-message').textContent = 'Referral ' + (decision === 'accept' ? 'accepted' : 'rejected') + '.';
        loadInbox(reply.log_position);
      } catch (e) {
        $('#inbox-error').textContent = 'Refused: ' + e.message;
      }
    };
    const open = x.status === 'submitted' || x.status === 'received';
    return el('tr', { 'data-referral': x.referral_id },
      el('th', { scope: 'row' }, enumLabel(x.priority, 'PRIORITY_')),
      el('td', { class: 'num' }, String(x.age_hours)),
      el('td', {}, words(x.status), x.reason ? el('span', { class: 'note' }, ': ' + x.reason) : null),
      el('td', {}, x.from_organisation),
      el('td', {}, el('a', { href: '/record/' + x.person_id, 'data-route': true, text: 'Open record' })),
      el('td', {}, open ? el('div', { class: 'decision' },
        el('div', { class: 'field' }, el('label', { for: reasonId, text: 'Reason (needed to reject)' }), el('input', { id: reasonId, autocomplete: 'off' })),
        el('button', { type: 'button', onclick: () => decide('accept'), text: 'Accept' }),
        el('button', { type: 'button', class: 'secondary', onclick: () => decide('reject'), text: 'Reject' })) : ''));
  }
  $('#inbox-form').addEventListener('submit', (e) => { e.preventDefault(); loadInbox(0); });

  // ---- caseload --------------------------------------------------------------------------
  function showCaseload() {
    show('caseload');
    document.title = 'Caseload - Carewoven';
    const input = $('#caseload-org');
    if (!input.value && claims().sub) input.value = claims().sub;
    loadCaseload();
  }
  async function loadCaseload() {
    const org = $('#caseload-org').value.trim();
    $('#caseload-error').textContent = '';
    if (!org) return;
    const query = new URLSearchParams();
    if ($('#caseload-kind').value === 'coordinator') {
      query.set('coordinator', org);
      const practitioner = $('#caseload-practitioner').value.trim();
      if (practitioner) query.set('practitioner', practitioner);
    } else query.set('organisation', org);
    try {
      const caseload = await api('/api/caseload?' + query);
      const ids = list(caseload.person_ids);
      const ul = $('#caseload');
      ul.replaceChildren(...ids.map((id) => el('li', { 'data-person': id },
        el('a', { href: '/record/' + id, 'data-route': true, text: 'Person ' + id.slice(0, 8) }))));
      if (!ids.length) ul.replaceChildren(el('li', { text: 'No one on this caseload.' }));
      // Names for the first few: each is a read of the record, audited as any other.
      for (const li of [...ul.querySelectorAll('li[data-person]')].slice(0, 25)) {
        api('/api/record/' + li.dataset.person).then((r) => {
          const a = li.querySelector('a');
          a.textContent = personName({ ...(r.profile || {}), person_id: r.person_id });
          if (r.profile && r.profile.nhs_number) li.append(el('span', { class: 'note', text: ' NHS ' + r.profile.nhs_number }));
        }).catch(() => {});
      }
    } catch (e) {
      $('#caseload').replaceChildren();
      $('#caseload-error').textContent = e.message;
    }
  }
  $('#caseload-form').addEventListener('submit', (e) => { e.preventDefault(); loadCaseload(); });

  // ---- start -----------------------------------------------------------------------------
  $('#signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('#token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('#token').value = '';
    $('#signin-error').textContent = '';
    route();
  });
  $('#sign-out').addEventListener('click', () => signOut(''));
  takeFragmentToken();
  route();
})();
