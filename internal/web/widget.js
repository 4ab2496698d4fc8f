/* visitord widget: page views, consent banner, chat start and the visitor's own data.
   <script async src="https://visitord.example.com/v1/widget.js" data-site="shop"></script> */
(function (w, d, n) {
  'use strict';
  var me = d.currentScript;
  if (!me || w.visitord) return;
  // The service's address is the script's own, whatever path prefix it sits under.
  var api = me.src.replace(/\/v1\/widget\.js([?#].*)?$/, '');
  var site = me.getAttribute('data-site') || '';
  var slot = 'visitord:' + site;
  var enc = encodeURIComponent;
  // Under Do Not Track or Global Privacy Control: a count ping only, without a
  // URL, but with the cookie and any stored token, so that an identity the
  // browser already holds receives the objection; then the widget forgets it.
  var priv = n.doNotTrack === '1' || n.globalPrivacyControl === true;
  var on = false, stopped = false, asked = false, timer = 0, last = '', cfg = null, banner = null;
  var noop = function () {}, queue = Promise.resolve();

  function token() {
    try { return w.localStorage.getItem(slot); } catch (e) { return null; }
  }
  function store(t) {
    try {
      if (t) w.localStorage.setItem(slot, t); else w.localStorage.removeItem(slot);
    } catch (e) { /* storage blocked: the cookie alone carries the identity */ }
  }

  // call sends a request to the service. The identity travels in the cookie
  // (credentials) and, for browsers that block third-party cookies, as the
  // token from first-party storage; anon sends neither.
  function call(method, path, body, anon) {
    var h = {}, t = !anon && token();
    var o = { method: method, headers: h, credentials: anon ? 'omit' : 'include', referrerPolicy: 'strict-origin' };
    if (body) {
      h['Content-Type'] = 'application/json';
      o.body = JSON.stringify(body);
    }
    if (t) h['X-Visitor-Token'] = t;
    return fetch(api + path, o).then(function (r) {
      if (r.status === 204) return null;
      return r.json().then(function (j) {
        if (!r.ok) {
          var e = new Error((j.error && j.error.message) || 'HTTP ' + r.status);
          e.code = j.error && j.error.code;
          e.status = r.status;
          throw e;
        }
        if (j.token && !anon) store(j.token);
        return j;
      });
    });
  }

  function here() { return location.href.split('#')[0]; }

  // view records a page view of the current URL, once per URL change.
  function view() {
    var url = here();
    if (url === last || stopped) return;
    var prev = last;
    last = url;
    if (priv) {
      // text/plain: no preflight unless a token must go; strict-origin: no page
      // URL in Referer either. The answer expires the cookie; the stored token
      // goes once the service has heard the objection.
      var t = token(), h = {};
      if (t) h['X-Visitor-Token'] = t;
      fetch(api + '/v1/track', {
        method: 'POST', credentials: 'include', referrerPolicy: 'strict-origin', headers: h,
        body: JSON.stringify({ site: site, type: 'pageview' })
      }).then(function (r) {
        if (r.ok && t) store('');
        return r.text(); // drained, so the connection is reused
      }).catch(noop);
      return;
    }
    var hit = { site: site, type: 'pageview', url: url, title: d.title, referrer: prev || d.referrer };
    // One page view at a time: a new visitor's second view must carry the
    // identity the first one brings back, not start a second visitor.
    queue = queue.then(function () {
      return call('POST', '/v1/track', hit).then(function (j) {
        on = j.tracked;
        beat();
        if (j.reason === 'no_consent') ask();
      }, noop);
    });
  }

  // beat sends a heartbeat every 15 s while the page is visible and tracked.
  function beat() {
    clearInterval(timer);
    timer = 0;
    if (!on || d.visibilityState !== 'visible') return;
    timer = setInterval(function () {
      call('POST', '/v1/track', { site: site, type: 'heartbeat' }).then(function (j) {
        if (!j.tracked) { on = false; beat(); }
      }, noop);
    }, 15000);
  }

  function conf() {
    cfg = cfg || call('GET', '/v1/sites/' + enc(site) + '/widget-config', null, true)
      .catch(function (e) { cfg = null; throw e; });
    return cfg;
  }

  // ask shows the consent banner on an opt-in site whose visitor has no choice yet.
  function ask() {
    if (asked) return;
    asked = true;
    Promise.all([conf(), call('GET', '/v1/consent?site=' + enc(site))]).then(function (r) {
      if (r[0].consent_mode === 'opt-in' && !r[1].valid_until) show(r[0].legal_text);
    }, function () { asked = false; });
  }

  function el(tag, text, css) {
    var e = d.createElement(tag);
    if (text) e.textContent = text;
    for (var k in css) e.style[k] = css[k];
    return e;
  }

  function show(text) {
    if (banner) return;
    var btn = { font: 'inherit', padding: '6px 14px', marginLeft: '8px', borderRadius: '4px', border: '1px solid #1a5fb4', cursor: 'pointer' };
    banner = el('div', '', {
      position: 'fixed', left: '16px', right: '16px', bottom: '16px', maxWidth: '520px', margin: '0 auto',
      padding: '12px 16px', background: '#fff', color: '#222', border: '1px solid #ccc', borderRadius: '8px',
      boxShadow: '0 2px 12px rgba(0,0,0,.2)', font: '14px/1.4 system-ui,sans-serif', zIndex: '2147483647'
    });
    banner.setAttribute('role', 'dialog');
    banner.setAttribute('aria-label', 'Privacy choice');
    banner.setAttribute('data-visitord', 'consent');
    var p = el('p', text, { margin: '0 0 10px' });
    var row = el('div', '', { textAlign: 'right' });
    var no = el('button', 'Refuse', btn);
    var yes = el('button', 'Accept', btn);
    yes.style.background = '#1a5fb4';
    yes.style.color = '#fff';
    no.style.background = '#fff';
    no.style.color = '#1a5fb4';
    no.type = yes.type = 'button';
    // The banner asks analytics only: marketing (a chat's opt-in) is left as it is.
    no.onclick = function () { choose(false).catch(noop); };
    yes.onclick = function () { choose(true).catch(noop); };
    row.appendChild(no);
    row.appendChild(yes);
    banner.appendChild(p);
    banner.appendChild(row);
    (d.body || d.documentElement).appendChild(banner);
  }

  // choose records a consent choice; a refusal's token is kept, so the banner
  // does not come back while it is valid. marketing is sent only when answered.
  function choose(analytics, marketing) {
    return conf().then(function (c) {
      var b = { site: site, analytics: !!analytics, policy_version: c.policy_version };
      if (marketing !== undefined) b.marketing = !!marketing;
      return call('PUT', '/v1/consent', b, priv);
    }).then(function (j) {
      if (banner) { banner.remove(); banner = null; }
      if (j.analytics && !on) { last = ''; view(); }
      if (!j.analytics) { on = false; beat(); }
      return j;
    });
  }

  w.visitord = {
    consent: function (o) { o = o || {}; return choose(o.analytics, o.marketing); },
    startChat: function (o) {
      o = o || {};
      return call('POST', '/v1/chats', { site: site, contact: o.contact || {}, marketing_opt_in: !!o.marketingOptIn, url: here() }, priv)
        .then(function (j) {
          // On an on-chat site the chat start is the visitor's request to be tracked.
          if (j.token && !on && !stopped) { on = true; last = here(); beat(); }
          return j;
        });
    },
    forgetMe: function () {
      return call('DELETE', '/v1/me?site=' + enc(site)).then(function () {
        store('');
        on = false;
        stopped = true;
        beat();
        return true;
      });
    },
    exportMyData: function () { return call('GET', '/v1/me?site=' + enc(site)); },
    config: conf
  };

  if (!site) return;
  ['pushState', 'replaceState'].forEach(function (k) {
    var orig = history[k];
    history[k] = function () {
      var r = orig.apply(this, arguments);
      setTimeout(view, 0);
      return r;
    };
  });
  w.addEventListener('popstate', function () { setTimeout(view, 0); });
  d.addEventListener('visibilitychange', beat);
  w.addEventListener('pagehide', function () {
    if (on && n.sendBeacon) n.sendBeacon(api + '/v1/track', JSON.stringify({ site: site, type: 'leave' }));
  });
  view();
})(window, document, navigator);
