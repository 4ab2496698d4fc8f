// The operator console: live visitors and a chat's context, read with the
// operator's key. The key lives in sessionStorage only; every value from the API
// reaches the page through textContent, never as HTML.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var KEY = 'visitord.console.key', SITE = 'visitord.console.site', CHAT = 'visitord.console.chat';
  var ss = window.sessionStorage;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function get(path) {
    var key = ss.getItem(KEY) || '';
    return fetch(path, { headers: { Authorization: 'Bearer ' + key }, credentials: 'omit', cache: 'no-store' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (!r.ok) throw new Error((j.error && j.error.message) || 'HTTP ' + r.status);
          return j;
        });
      });
  }

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
  function sitePath() {
    return '/v1/sites/' + encodeURIComponent(ss.getItem(SITE) || '');
  }
  function ready() {
    return ss.getItem(KEY) && ss.getItem(SITE);
  }

  function refreshLive() {
    var body = $('live').tBodies[0];
    if (!ready()) {
      $('live-status').textContent = 'Paste an operator key and a site id, then Connect.';
      body.replaceChildren();
      return Promise.resolve();
    }
    return get(sitePath() + '/visitors/live?limit=200').then(function (j) {
      var rows = j.visitors.map(function (v) {
        var tr = el('tr');
        tr.setAttribute('data-pseudonym', v.pseudonym);
        var page = el('td');
        page.appendChild(el('div', v.current_page.title || '(no title)', 'title'));
        page.appendChild(el('div', v.current_page.url, 'url'));
        tr.append(el('td', v.pseudonym, 'mono'), page, el('td', v.pages), el('td', duration(v.session_seconds)),
          el('td', place(v.location)), el('td', device(v.device)), el('td', v.referrer || '—'), el('td', time(v.last_seen)));
        return tr;
      });
      body.replaceChildren.apply(body, rows);
      $('live-count').textContent = '(' + rows.length + ')';
      $('live-status').textContent = rows.length ? '' : 'Nobody is on the site right now.';
    }).catch(function (e) {
      $('live-status').textContent = 'Live visitors: ' + e.message;
    });
  }

  function field(dl, name, value) {
    dl.append(el('dt', name), el('dd', value === '' || value === undefined || value === null ? '—' : value));
  }

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
      field(dl, 'Started', new Date(c.time).toLocaleString());
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
        prev.appendChild(el('li', new Date(p.time).toLocaleString() + ' — ' + [p.contact.name, p.contact.email].filter(Boolean).join(', ')));
      });
      view.replaceChildren(dl, el('h3', 'Pages this session (' + c.trail.length + ')'), trail,
        el('h3', 'Previous chats (' + c.previous_chats.length + ')'), c.previous_chats.length ? prev : el('p', 'None.'));
      $('chat-status').textContent = '';
    }).catch(function (e) {
      view.replaceChildren();
      $('chat-status').textContent = 'Chat: ' + e.message;
    });
  }

  function refresh() {
    return Promise.all([refreshLive(), refreshChat()]);
  }

  $('site').value = ss.getItem(SITE) || new URLSearchParams(location.search).get('site') || '';
  $('chat').value = ss.getItem(CHAT) || '';
  if (ss.getItem(KEY)) $('key').placeholder = 'key kept for this tab';

  $('connect').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var key = $('key').value.trim();
    if (key) ss.setItem(KEY, key);
    ss.setItem(SITE, $('site').value.trim());
    $('key').value = '';
    $('key').placeholder = 'key kept for this tab';
    refresh();
  });
  $('disconnect').addEventListener('click', function () {
    ss.removeItem(KEY);
    $('key').placeholder = 'paste the key';
    refresh();
  });
  $('chat-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    ss.setItem(CHAT, $('chat').value.trim());
    refreshChat();
  });

  refresh();
  setInterval(refresh, 5000);
})();
