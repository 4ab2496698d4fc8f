// The console of visitord for both roles. An operator key shows the live
// visitors (pushed by the live stream, polled when the stream is unavailable)
// and a chat's context, read when asked for. A privacy key shows retention,
// subject requests, the audit trail and the record of processing. Both see the
// page views of the last 30 days as a chart drawn here in SVG. The key lives in
// sessionStorage only and travels in the Authorization header, never in a URL;
// every value from the API reaches the page through textContent, never as HTML.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var KEY = 'visitord.console.key', SITE = 'visitord.console.site', CHAT = 'visitord.console.chat';
  var ss = window.sessionStorage;
  var SVG = 'http://www.w3.org/2000/svg';
  var POLL_MS = 5000, STREAM_RETRY_MS = 15000;

  var state = { role: '', live: null, pollTimer: 0, retryTimer: 0, auditCursor: '', auditTarget: '', auditSeq: 0 };

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function button(label, onClick, cls) {
    var b = el('button', label, cls);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  function key() { return ss.getItem(KEY) || ''; }
  function ready() { return key() && ss.getItem(SITE); }
  function sitePath() { return '/v1/sites/' + encodeURIComponent(ss.getItem(SITE) || ''); }

  // call sends an API request with the key; it resolves with the parsed body
  // (null for 204) or rejects with an Error carrying status, code and message.
  function call(method, path, body) {
    var headers = { Authorization: 'Bearer ' + key() };
    var init = { method: method, headers: headers, credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      if (r.status === 204) return null;
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var e = new Error((j.error && j.error.message) || 'HTTP ' + r.status);
          e.status = r.status;
          e.code = j.error && j.error.code;
          throw e;
        }
        return j;
      });
    });
  }
  function get(path) { return call('GET', path); }

  function duration(s) {
    s = Math.round(s || 0);
    var m = Math.floor(s / 60);
    return m ? m + ' min ' + (s % 60) + ' s' : s + ' s';
  }
  function place(l) {
    return [l.city, l.region, l.country].filter(Boolean).join(', ') || '—';
  }
  function device(d) {
    return [d.browser, d.version, d.os ? 'on ' + d.os : '', d.mobile ? '(mobile)' : ''].filter(Boolean).join(' ') || '—';
  }
  function time(t) {
    var d = new Date(t);
    return isNaN(d) ? '—' : d.toLocaleTimeString();
  }
  function dateTime(t) {
    var d = new Date(t);
    return isNaN(d) ? '—' : d.toLocaleString();
  }
  function field(dl, name, value) {
    dl.append(el('dt', name), el('dd', value === '' || value === undefined || value === null ? '—' : value));
  }

  // ---- role ----

  // learnRole asks a privacy route first: 200 is a privacy key, 403 an operator
  // key (or another site's key, which the operator route then tells).
  function learnRole() {
    if (!ready()) return Promise.resolve('');
    return get(sitePath() + '/retention').then(function () { return 'privacy'; }, function (e) {
      if (e.status !== 403) throw e;
      return get(sitePath() + '/visitors/live?limit=1').then(function () { return 'operator'; });
    });
  }

  function show(role) {
    state.role = role;
    document.querySelectorAll('section[data-role]').forEach(function (s) {
      s.hidden = !role || s.getAttribute('data-role').split(' ').indexOf(role) < 0;
    });
    document.body.setAttribute('data-role', role || 'none');
  }

  function connect() {
    stopLive();
    show('');
    if (!ready()) {
      $('role').textContent = 'Paste an API key and a site id, then Connect.';
      return Promise.resolve();
    }
    $('role').textContent = 'Connecting…';
    return learnRole().then(function (role) {
      show(role);
      $('role').textContent = (role === 'privacy' ? 'Privacy team' : 'Operator') + ' of site ' + ss.getItem(SITE) + '.';
      var work = [refreshStats()];
      if (role === 'operator') {
        startLive();
        work.push(refreshChat());
      } else {
        work.push(refreshRetention(), refreshAudit(true), refreshRecord());
      }
      return Promise.all(work);
    }).catch(function (e) {
      $('role').textContent = 'Not connected: ' + e.message;
    });
  }

  // ---- live visitors: the stream, else polling ----

  function renderLive(rows) {
    var body = $('live').tBodies[0];
    var trs = rows.map(function (v) {
      var tr = el('tr');
      tr.setAttribute('data-pseudonym', v.pseudonym);
      var page = el('td');
      page.appendChild(el('div', v.current_page.title || '(no title)', 'title'));
      page.appendChild(el('div', v.current_page.url, 'url'));
      tr.append(el('td', v.pseudonym, 'mono'), page, el('td', v.pages), el('td', duration(v.session_seconds)),
        el('td', place(v.location)), el('td', device(v.device)), el('td', v.referrer || '—'), el('td', time(v.last_seen)));
      return tr;
    });
    body.replaceChildren.apply(body, trs);
    $('live-count').textContent = '(' + trs.length + ')';
    $('live-status').textContent = trs.length ? '' : 'Nobody is on the site right now.';
  }

  // LiveList keeps the rows by pseudonym, most recently active first.
  function LiveList() { this.rows = {}; }
  LiveList.prototype.snapshot = function (visitors) {
    var m = {};
    visitors.forEach(function (v) { m[v.pseudonym] = v; });
    this.rows = m;
  };
  LiveList.prototype.change = function (c) {
    var m = this.rows;
    c.upsert.forEach(function (v) { m[v.pseudonym] = v; });
    c.remove.forEach(function (p) { delete m[p]; });
  };
  LiveList.prototype.list = function () {
    var m = this.rows;
    return Object.keys(m).map(function (k) { return m[k]; }).sort(function (a, b) {
      return new Date(b.last_seen) - new Date(a.last_seen);
    });
  };

  function stopLive() {
    if (state.live && state.live.abort) state.live.abort.abort();
    state.live = null;
    clearInterval(state.pollTimer);
    clearTimeout(state.retryTimer);
    state.pollTimer = state.retryTimer = 0;
  }

  function startLive() {
    stopLive();
    var live = { abort: new AbortController(), list: new LiveList() };
    state.live = live;
    $('live-mode').textContent = 'Connecting to live updates…';
    fetch(sitePath() + '/visitors/live/stream', {
      headers: { Authorization: 'Bearer ' + key(), Accept: 'text/event-stream' },
      credentials: 'omit', cache: 'no-store', signal: live.abort.signal,
    }).then(function (r) {
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      $('live-mode').textContent = 'Live: the list updates by itself.';
      clearInterval(state.pollTimer);
      state.pollTimer = 0;
      return readEvents(r.body.getReader(), function (name, data) {
        if (state.live !== live) return;
        if (name === 'snapshot') live.list.snapshot(JSON.parse(data).visitors);
        else if (name === 'change') live.list.change(JSON.parse(data));
        else return;
        renderLive(live.list.list());
      });
    }).then(function () {
      throw new Error('the stream ended');
    }).catch(function (e) {
      if (state.live !== live || live.abort.signal.aborted) return;
      fallBack(e);
    });
  }

  // readEvents parses Server-Sent Events from a byte stream reader.
  function readEvents(reader, onEvent) {
    var decoder = new TextDecoder(), buf = '';
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buf += decoder.decode(chunk.value, { stream: true });
        var i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          var block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          var name = 'message', data = [];
          block.split('\n').forEach(function (line) {
            if (line.indexOf('event:') === 0) name = line.slice(6).trim();
            else if (line.indexOf('data:') === 0) data.push(line.slice(5).replace(/^ /, ''));
          });
          if (data.length) onEvent(name, data.join('\n'));
        }
        return pump();
      });
    }
    return pump();
  }

  // fallBack polls the live list while the stream is unavailable, and tries the
  // stream again now and then.
  function fallBack(e) {
    $('live-mode').textContent = 'Live updates unavailable (' + e.message + '): the list refreshes every 5 s.';
    pollLive();
    if (!state.pollTimer) state.pollTimer = setInterval(pollLive, POLL_MS);
    state.retryTimer = setTimeout(function () { if (state.role === 'operator') startLive(); }, STREAM_RETRY_MS);
  }

  function pollLive() {
    return get(sitePath() + '/visitors/live?limit=200').then(function (j) {
      renderLive(j.visitors);
    }).catch(function (e) {
      $('live-status').textContent = 'Live visitors: ' + e.message;
    });
  }

  // ---- chat context: read when asked for ----

  function refreshChat() {
    var id = ss.getItem(CHAT) || '';
    var view = $('chat-view');
    if (!id || !ready()) {
      view.replaceChildren();
      $('chat-status').textContent = '';
      return Promise.resolve();
    }
    return get(sitePath() + '/chats/' + encodeURIComponent(id)).then(function (c) {
      var dl = el('dl');
      field(dl, 'Chat', c.chat_id);
      field(dl, 'Started', dateTime(c.time));
      field(dl, 'Name', c.contact.name);
      field(dl, 'E-mail', c.contact.email);
      field(dl, 'Phone', c.contact.phone);
      field(dl, 'Marketing', c.marketing_opt_in ? 'yes, opted in' : 'no');
      field(dl, 'Started on', c.url);
      field(dl, 'Location', place(c.location));
      field(dl, 'Device', device(c.device));
      field(dl, 'Referrer', c.referrer);
      var trail = el('ol', null, 'trail');
      c.trail.forEach(function (p) {
        var li = el('li');
        li.append(el('span', p.title || '(no title)', 'title'), el('span', p.url, 'url'), el('span', duration(p.duration_seconds), 'dur'));
        trail.appendChild(li);
      });
      var prev = el('ul', null, 'previous');
      c.previous_chats.forEach(function (p) {
        prev.appendChild(el('li', dateTime(p.time) + ' — ' + [p.contact.name, p.contact.email].filter(Boolean).join(', ')));
      });
      view.replaceChildren(dl, el('h3', 'Pages this session (' + c.trail.length + ')'), trail,
        el('h3', 'Previous chats (' + c.previous_chats.length + ')'), c.previous_chats.length ? prev : el('p', 'None.'));
      $('chat-status').textContent = '';
    }).catch(function (e) {
      view.replaceChildren();
      $('chat-status').textContent = 'Chat: ' + e.message;
    });
  }

  // ---- retention ----

  var WINDOWS = [
    ['sessions', 'Sessions', 'Page trails with titles and times, referrer, device, location and IP of each session; counted from its last page.'],
    ['profiles', 'Profiles', 'The identity: first seen, number of sessions, current session; counted from the last visit. Also caps the identity cookie.'],
    ['chats', 'Chats', 'Chats with their contact details (name, e-mail, phone, encrypted) and marketing permission; counted from the chat\'s start.'],
    ['consents', 'Consent records', 'Proof of each consent choice (time, choices, policy version, method); at least as long as profiles and the consent validity.'],
    ['audit', 'Audit trail', 'Who read or changed which subject\'s data, named by keyed hashes.'],
  ];

  function refreshRetention() {
    return get(sitePath() + '/retention').then(renderRetention).catch(function (e) {
      $('retention-status').textContent = 'Retention: ' + e.message;
    });
  }

  function renderRetention(r) {
    var body = $('retention').tBodies[0];
    body.replaceChildren.apply(body, WINDOWS.map(function (w) {
      var tr = el('tr');
      var id = 'retention-' + w[0];
      var label = el('label', w[1]);
      label.htmlFor = id;
      var input = el('input');
      input.type = 'number';
      input.id = id;
      input.name = w[0];
      input.min = r.min_days;
      input.max = r.max_days;
      input.step = 1;
      input.value = r[w[0]];
      var err = el('span', '', 'field-error');
      err.id = id + '-error';
      err.setAttribute('role', 'alert');
      input.setAttribute('aria-describedby', err.id);
      var days = el('td');
      days.append(input, el('span', ' days', 'unit'));
      tr.append(el('th', null), el('td', w[2], 'covers'), days, el('td'));
      tr.cells[0].appendChild(label);
      tr.cells[3].appendChild(err);
      return tr;
    }));
    $('retention-changed').textContent = r.changed_at ?
      'Last changed ' + dateTime(r.changed_at) + '. Each window may be ' + r.min_days + ' to ' + r.max_days + ' days.' :
      'Never changed here: the windows of the sites file apply. Each window may be ' + r.min_days + ' to ' + r.max_days + ' days.';
  }

  function saveRetention(ev) {
    ev.preventDefault();
    var body = {}, bad = false;
    document.querySelectorAll('#retention .field-error').forEach(function (s) { s.textContent = ''; });
    WINDOWS.forEach(function (w) {
      var v = $('retention-' + w[0]).value.trim();
      if (!/^\d+$/.test(v)) {
        $('retention-' + w[0] + '-error').textContent = 'A whole number of days, please.';
        bad = true;
      }
      body[w[0]] = parseInt(v, 10);
    });
    if (bad) return Promise.resolve();
    $('retention-status').textContent = 'Saving…';
    return call('PUT', sitePath() + '/retention', body).then(function (r) {
      renderRetention(r);
      $('retention-status').textContent = 'Saved.';
    }).catch(function (e) {
      // The refusal names the window it is about first: show it next to that field.
      var m = /\b(sessions|profiles|chats|consents|audit)\b/.exec(e.message);
      var name = m && m[1];
      if (name) {
        $('retention-' + name + '-error').textContent = e.message;
        $('retention-status').textContent = 'Not saved.';
      } else {
        $('retention-status').textContent = 'Not saved: ' + e.message;
      }
    });
  }

  // ---- subject requests ----

  function download(name, data) {
    var blob = new Blob([JSON.stringify(data, null, 2) + '\n'], { type: 'application/json' });
    var a = el('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
  }

  function search(ev) {
    if (ev) ev.preventDefault();
    var email = $('search-email').value.trim();
    var list = $('subjects');
    list.replaceChildren();
    if (!email) {
      $('search-status').textContent = 'Type an e-mail address first.';
      return Promise.resolve();
    }
    $('search-status').textContent = 'Searching…';
    return call('POST', sitePath() + '/subjects/search', { email: email }).then(function (r) {
      var cards = r.visitors.map(function (id) { return subjectCard('visitor', id); })
        .concat(r.chats.map(function (id) { return subjectCard('chat', id); }));
      list.replaceChildren.apply(list, cards);
      $('search-status').textContent = cards.length ?
        cards.length + ' subject' + (cards.length === 1 ? '' : 's') + ' found.' : 'Nothing found for this e-mail.';
    }).catch(function (e) {
      $('search-status').textContent = 'Search: ' + e.message;
    });
  }

  function subjectCard(kind, id) {
    var path = sitePath() + (kind === 'visitor' ? '/visitors/' : '/chats/') + encodeURIComponent(id);
    var card = el('article', null, 'subject');
    card.setAttribute('data-subject', id);
    card.appendChild(el('h3', (kind === 'visitor' ? 'Visitor ' : 'Chat without identity ') + id));
    var status = el('p', '', 'subject-status');
    status.setAttribute('role', 'status');
    var actions = el('div', null, 'actions');
    var panel = el('div', null, 'panel');

    actions.appendChild(button('Export', function () {
      status.textContent = 'Exporting…';
      get(path).then(function (doc) {
        download('visitord-' + ss.getItem(SITE) + '-' + kind + '-' + id + '.json', doc);
        status.textContent = 'Exported ' + dateTime(new Date()) + ' (the read is in the audit trail).';
      }).catch(function (e) { status.textContent = 'Export: ' + e.message; });
    }));

    if (kind === 'visitor') {
      actions.appendChild(button('Rectify', function () { panel.replaceChildren(rectifyForm(path, status, panel)); }));
    }

    actions.appendChild(button('Erase', function () {
      var confirmBox = el('div', null, 'confirm');
      confirmBox.setAttribute('role', 'alertdialog');
      confirmBox.append(el('p', 'Erase everything stored about this ' + (kind === 'visitor' ? 'visitor' : 'chat') +
        '? This cannot be undone; consent proof and the audit trail remain, pointing at no one.'),
      button('Confirm erasure', function () {
        status.textContent = 'Erasing…';
        call('DELETE', path).then(function () {
          panel.replaceChildren();
          actions.replaceChildren();
          card.classList.add('erased');
          status.textContent = 'Erased ' + dateTime(new Date()) + '. Nothing of this subject remains but consent proof and the audit trail.';
          refreshAudit(true);
        }).catch(function (e) { status.textContent = 'Erase: ' + e.message; });
      }, 'danger'),
      button('Cancel', function () { panel.replaceChildren(); }));
      panel.replaceChildren(confirmBox);
    }, 'danger'));

    card.append(actions, panel, status);
    return card;
  }

  function rectifyForm(path, status, panel) {
    var form = el('form', null, 'rectify');
    form.noValidate = true;
    form.autocomplete = 'off';
    var inputs = {};
    [['name', 'Name'], ['email', 'E-mail'], ['phone', 'Phone']].forEach(function (f) {
      var label = el('label', f[1] + ' ');
      var input = el('input');
      input.name = f[0];
      input.placeholder = 'unchanged';
      label.appendChild(input);
      inputs[f[0]] = input;
      form.appendChild(label);
    });
    var save = el('button', 'Save rectification');
    save.type = 'submit';
    form.append(save, button('Cancel', function () { panel.replaceChildren(); }));
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var contact = {};
      Object.keys(inputs).forEach(function (k) {
        var v = inputs[k].value.trim();
        if (v) contact[k] = v;
      });
      if (!Object.keys(contact).length) {
        status.textContent = 'Fill in the fields to correct.';
        return;
      }
      status.textContent = 'Saving…';
      call('PATCH', path, { contact: contact }).then(function () {
        panel.replaceChildren();
        status.textContent = 'Rectified ' + dateTime(new Date()) + ': ' + Object.keys(contact).join(', ') + '.';
      }).catch(function (e) { status.textContent = 'Rectify: ' + e.message; });
    });
    return form;
  }

  // ---- audit trail ----

  // refreshAudit reads the first page (reset) or the next one; only the answer
  // of the latest call is shown, so overlapping reads never mix their rows.
  function refreshAudit(reset) {
    var seq = ++state.auditSeq;
    var q = '?limit=50';
    if (state.auditTarget) q += '&target=' + encodeURIComponent(state.auditTarget);
    if (!reset && state.auditCursor) q += '&cursor=' + encodeURIComponent(state.auditCursor);
    return get(sitePath() + '/audit' + q).then(function (r) {
      if (seq !== state.auditSeq) return;
      var body = $('audit').tBodies[0];
      if (reset) body.replaceChildren();
      $('audit').setAttribute('data-target', state.auditTarget);
      r.entries.forEach(function (a) {
        var tr = el('tr');
        tr.append(el('td', dateTime(a.time)), el('td', a.actor), el('td', a.action, 'action'), el('td', a.target, 'mono'));
        body.appendChild(tr);
      });
      state.auditCursor = r.next_cursor || '';
      $('audit-more').hidden = !state.auditCursor;
      $('audit-status').textContent = body.rows.length ? '' :
        (state.auditTarget ? 'No entries about this id.' : 'The audit trail is empty.');
    }).catch(function (e) {
      if (seq !== state.auditSeq) return;
      $('audit-status').textContent = 'Audit trail: ' + e.message;
    });
  }

  // ---- record of processing ----

  function list(items, render) {
    var ul = el('ul');
    items.forEach(function (it) { ul.appendChild(render(it)); });
    return ul;
  }
  function item(title, text) {
    var li = el('li');
    li.append(el('strong', title), document.createTextNode(text ? ' — ' + text : ''));
    return li;
  }

  function refreshRecord() {
    return get(sitePath() + '/processing-record').then(function (r) {
      var dl = el('dl');
      field(dl, 'Controller', r.controller.name);
      field(dl, 'Contact', r.controller.contact);
      field(dl, 'DPO', r.controller.dpo);
      field(dl, 'Site', r.site.id + ' (' + r.site.origins.join(', ') + ')');
      field(dl, 'Consent', r.site.consent_mode + ': ' + r.site.consent_meaning + ' Valid ' + r.site.consent_valid_days + ' days.');
      field(dl, 'Policy version', r.site.policy_version);
      field(dl, 'IP addresses', r.site.ip_mode);
      field(dl, 'Transfers', r.transfers);
      field(dl, 'Generated', dateTime(r.generated_at));
      $('record').replaceChildren(dl,
        el('h3', 'Data subjects'), list(r.data_subjects, function (s) { return item(s.name, s.description); }),
        el('h3', 'Data categories'), list(r.data_categories, function (c) {
          return item(c.name, c.description + ' Subjects: ' + c.data_subjects.join(', ') + '. Kept: ' + c.retention + '.');
        }),
        el('h3', 'Purposes and legal bases'), list(r.purposes, function (p) {
          return item(p.name, p.description + ' ' + p.legal_bases.map(function (b) {
            return b.article + ' (' + b.basis + ')' + (b.note ? ': ' + b.note : '');
          }).join('; '));
        }),
        el('h3', 'Retention'), list(r.retention, function (x) {
          return item(x.category, x.data + ': ' + x.days + ' days from ' + x.from + (x.configurable ? ' (configurable)' : ''));
        }),
        el('h3', 'Recipients'), r.recipients.length ?
          list(r.recipients, function (x) { return item(x.name, x.kind + ': ' + x.description); }) : el('p', 'None.'),
        el('h3', 'Safeguards'), list(r.safeguards, function (x) { return item(x.name, x.description); }));
      $('record-status').textContent = '';
    }).catch(function (e) {
      $('record-status').textContent = 'Record of processing: ' + e.message;
    });
  }

  // ---- page views per day, as SVG ----

  var SERIES = [
    ['tracked', 'Tracked', 'c-tracked'],
    ['no_consent', 'No consent', 'c-no_consent'],
    ['dnt', 'Do Not Track', 'c-dnt'],
    ['gpc', 'Global Privacy Control', 'c-gpc'],
    ['bot', 'Bots', 'c-bot'],
  ];

  function day(d) { return d.toISOString().slice(0, 10); }

  function refreshStats() {
    var to = new Date();
    var from = new Date(to.getTime() - 29 * 86400000);
    return get(sitePath() + '/stats?from=' + day(from) + '&to=' + day(to)).then(function (r) {
      $('stats-chart').replaceChildren(chart(r.days), legend(r.days));
      $('stats-status').textContent = '';
    }).catch(function (e) {
      $('stats-status').textContent = 'Page views: ' + e.message;
    });
  }

  function value(d, key) { return key === 'tracked' ? d.tracked : (d.refused[key] || 0); }

  function svg(tag, attrs) {
    var n = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { n.setAttribute(k, String(attrs[k])); });
    return n;
  }

  // chart draws one stacked bar per day: tracked at the bottom, then each refusal reason.
  function chart(days) {
    var W = 900, H = 240, left = 44, right = 20, bottom = 28, top = 10;
    var max = 1;
    days.forEach(function (d) {
      var sum = 0;
      SERIES.forEach(function (s) { sum += value(d, s[0]); });
      max = Math.max(max, sum);
    });
    var scale = (H - bottom - top) / max;
    var slot = (W - left - right) / days.length, bar = Math.max(2, slot * 0.7);
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'class': 'chart' });
    var title = svg('title', {});
    title.textContent = 'Tracked and refused page views per day, ' + days[0].day + ' to ' + days[days.length - 1].day;
    root.appendChild(title);
    [0, 0.5, 1].forEach(function (f) {
      var y = H - bottom - f * max * scale;
      root.appendChild(svg('line', { x1: left, x2: W, y1: y, y2: y, 'class': 'grid' }));
      var t = svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', 'class': 'axis' });
      t.textContent = String(Math.round(f * max));
      root.appendChild(t);
    });
    days.forEach(function (d, i) {
      var x = left + i * slot + (slot - bar) / 2, y = H - bottom;
      var g = svg('g', { 'data-day': d.day });
      var tip = svg('title', {});
      tip.textContent = d.day + ': ' + SERIES.map(function (s) { return s[1] + ' ' + value(d, s[0]); }).join(', ');
      g.appendChild(tip);
      SERIES.forEach(function (s) {
        var h = value(d, s[0]) * scale;
        if (h <= 0) return;
        y -= h;
        g.appendChild(svg('rect', { x: x, y: y, width: bar, height: h, 'class': s[2], 'data-series': s[0] }));
      });
      root.appendChild(g);
      if (i % 5 === 0 || i === days.length - 1) {
        var t = svg('text', { x: x + bar / 2, y: H - 8, 'text-anchor': 'middle', 'class': 'axis' });
        t.textContent = d.day.slice(5);
        root.appendChild(t);
      }
    });
    return root;
  }

  function legend(days) {
    var ul = el('ul', null, 'legend');
    SERIES.forEach(function (s) {
      var total = 0;
      days.forEach(function (d) { total += value(d, s[0]); });
      var li = el('li');
      li.append(el('span', '', 'swatch ' + s[2]), el('span', s[1] + ': ' + total));
      li.setAttribute('data-series', s[0]);
      ul.appendChild(li);
    });
    return ul;
  }

  // ---- wiring ----

  $('site').value = ss.getItem(SITE) || new URLSearchParams(location.search).get('site') || '';
  $('chat').value = ss.getItem(CHAT) || '';
  if (key()) $('key').placeholder = 'key kept for this tab';

  $('connect').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var k = $('key').value.trim();
    if (k) ss.setItem(KEY, k);
    ss.setItem(SITE, $('site').value.trim());
    $('key').value = '';
    $('key').placeholder = 'key kept for this tab';
    connect();
  });
  $('disconnect').addEventListener('click', function () {
    ss.removeItem(KEY);
    $('key').placeholder = 'paste the key';
    connect();
  });
  $('chat-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    ss.setItem(CHAT, $('chat').value.trim());
    refreshChat();
  });
  $('retention-form').addEventListener('submit', saveRetention);
  $('search-form').addEventListener('submit', search);
  $('audit-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    state.auditTarget = $('audit-target').value.trim();
    refreshAudit(true);
  });
  $('audit-clear').addEventListener('click', function () {
    $('audit-target').value = '';
    state.auditTarget = '';
    refreshAudit(true);
  });
  $('audit-more').addEventListener('click', function () { refreshAudit(false); });
  $('record-print').addEventListener('click', function () { window.print(); });

  connect();
})();
