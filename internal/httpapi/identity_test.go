package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// identitySetCookie is the raw Set-Cookie line of the named cookie, "" if none.
func identitySetCookie(r resp, name string) string {
	for _, v := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(v, name+"=") {
			return v
		}
	}
	return ""
}

// TestIdentityLogsCarryNoPII pins invariant 8 for logs: after page views with a
// forwarded IP, a token and a URL with a path and query, and the heartbeat,
// leave and error answers around them, no log line holds any of those, and
// access log lines name the route template.
func TestIdentityLogsCarryNoPII(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *envOptions) {
		o.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	headers := map[string]string{"Origin": shopOrigin, "X-Forwarded-For": londonIP}
	pageURL := shopOrigin + "/products/42?utm_source=newsletter&email=jane%40mail.example"
	first := e.pageview("shop", pageURL, "", headers)
	token, _ := first.json(t)["token"].(string)
	if first.status != http.StatusOK || token == "" {
		t.Fatalf("status %d, body %s", first.status, first.body)
	}
	id := e.visitorID("shop", token)
	e.clock.Advance(10 * time.Second)
	if r := e.pageview("shop", pageURL, token, headers); r.status != http.StatusOK {
		t.Fatalf("returning page view: status %d", r.status)
	}
	if r := e.hit("shop", "heartbeat", token); r.status != http.StatusOK {
		t.Fatalf("heartbeat: status %d", r.status)
	}
	if r := e.hit("shop", "leave", token); r.status != http.StatusOK {
		t.Fatalf("leave: status %d", r.status)
	}
	if r := e.pageview("shop", "https://evil.example/products/42?utm_source=x", token, headers); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("page view of another origin: status %d", r.status)
	}
	if r := e.pageview("shop", pageURL, "", map[string]string{"X-Forwarded-For": londonIP, "DNT": "1"}); r.status != http.StatusOK {
		t.Fatalf("DNT page view: status %d", r.status)
	}

	e.assertLogsClean(londonIP, token, "/products/42", "utm_source", "jane", id, e.hasher.VisitorKey("shop", id))

	var access int
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if line["msg"] != "request" {
			continue
		}
		access++
		if got := line["route"]; got != "/v1/track" {
			t.Errorf("access log route = %v, want the template /v1/track: %s", got, sc.Text())
		}
		if got := line["site"]; got != "shop" {
			t.Errorf("access log site = %v, want shop: %s", got, sc.Text())
		}
		if _, ok := line["status"]; !ok {
			t.Errorf("access log line without status: %s", sc.Text())
		}
		for _, k := range []string{"path", "url", "query", "ip", "client_ip", "remote_addr", "token", "user_agent"} {
			if _, ok := line[k]; ok {
				t.Errorf("access log line has %q: %s", k, sc.Text())
			}
		}
	}
	if access != 6 {
		t.Errorf("%d access log lines, want one per request (6):\n%s", access, e.logs.String())
	}
}

// The identity cookie as the transport sets it, over a fake domain: its
// attributes in production (Secure; SameSite=None; Partitioned) and in plain-HTTP
// development (SameSite=Lax), its lifetime the token's own expiry, set only when
// the domain issued a token, and expired only when the domain asks and the
// request carried one.
func TestIdentityCookieTransport(t *testing.T) {
	t.Parallel()
	pv := `{"site":"shop","type":"pageview","url":"https://shop.example/"}`
	for _, tc := range []struct {
		name    string
		secure  bool
		headers map[string]string
		cookie  bool // the request carries a vt_shop cookie the fake issued
		// set: the response sets the cookie with these attributes; expire: it
		// expires it; neither: it sets no cookie.
		set    []string
		absent []string
		expire bool
	}{
		{name: "issued in production", secure: true, set: []string{"Path=/", "HttpOnly", "Secure", "SameSite=None", "Partitioned"}},
		{name: "issued in development", set: []string{"Path=/", "HttpOnly", "SameSite=Lax"}, absent: []string{"Secure", "SameSite=None", "Partitioned"}},
		{name: "kept by a returning visitor", cookie: true},
		{name: "dnt forgets a carried identity", secure: true, cookie: true, headers: map[string]string{"DNT": "1"}, expire: true},
		{name: "gpc forgets a carried identity", cookie: true, headers: map[string]string{"Sec-GPC": "1"}, expire: true},
		{name: "dnt without a cookie sets none", headers: map[string]string{"DNT": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, func(o *envOptions) { o.cookieSecure = tc.secure })
			rq := req{method: http.MethodPost, path: "/v1/track", body: pv, headers: tc.headers}
			if tc.cookie {
				rq.cookies = []*http.Cookie{{Name: "vt_shop", Value: e.fake.issue()}}
			}
			r := e.do(rq)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			checkContract(t, e, rq, r)
			raw := identitySetCookie(r, "vt_shop")
			switch {
			case tc.set == nil && !tc.expire:
				if raw != "" {
					t.Fatalf("Set-Cookie %q, want none", raw)
				}
				return
			case raw == "":
				t.Fatalf("no vt_shop cookie set: %q", r.header.Values("Set-Cookie"))
			}
			ck := r.cookie("vt_shop")
			if tc.expire {
				if ck.MaxAge >= 0 || ck.Value != "" || !ck.HttpOnly {
					t.Errorf("Set-Cookie %q, want an expired, empty HttpOnly cookie", raw)
				}
				if tc.secure && (!ck.Secure || !ck.Partitioned) {
					t.Errorf("Set-Cookie %q, want the attributes of the cookie it expires", raw)
				}
				return
			}
			attrs := map[string]bool{}
			for _, a := range strings.Split(raw, ";")[1:] {
				attrs[strings.ToLower(strings.TrimSpace(a))] = true
			}
			for _, a := range tc.set {
				if !attrs[strings.ToLower(a)] {
					t.Errorf("Set-Cookie %q lacks %s", raw, a)
				}
			}
			for _, a := range tc.absent {
				if attrs[strings.ToLower(a)] {
					t.Errorf("Set-Cookie %q has %s", raw, a)
				}
			}
			// The fake issues tokens valid 395 days from its clock.
			want := e.clock.Now().Add(395 * 24 * time.Hour)
			if !ck.Expires.Equal(want) || ck.MaxAge != int(395*24*time.Hour/time.Second) {
				t.Errorf("Expires %s, Max-Age %d, want the token's expiry %s", ck.Expires, ck.MaxAge, want)
			}
			if got := r.json(t)["token"]; got != ck.Value {
				t.Errorf("body token %v, cookie %q: want the same", got, ck.Value)
			}
		})
	}
}

// What the transport hands the domain of a page view: the token from
// X-Visitor-Token, else the cookie, never the URL; DNT and Sec-GPC; the
// User-Agent; and the client's address, from X-Forwarded-For only when the
// peer is a trusted proxy.
func TestIdentityHitFromRequest(t *testing.T) {
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	pv := `{"site":"shop","type":"pageview","url":"https://shop.example/a","title":"A","referrer":"https://search.example/"}`
	for _, tc := range []struct {
		name     string
		proxies  []netip.Prefix
		path     string
		headers  map[string]string
		cookie   string
		wantTok  string
		wantIP   string
		dnt, gpc bool
	}{
		{name: "token header", headers: map[string]string{tokenHeader: "h.1"}, wantTok: "h.1", wantIP: "127.0.0.1"},
		{name: "cookie", cookie: "c.1", wantTok: "c.1", wantIP: "127.0.0.1"},
		{name: "header over cookie", headers: map[string]string{tokenHeader: "h.1"}, cookie: "c.1", wantTok: "h.1", wantIP: "127.0.0.1"},
		{name: "never the query", path: "?token=q.1&vt_shop=q.1&" + tokenHeader + "=q.1", wantIP: "127.0.0.1"},
		{name: "signals", headers: map[string]string{"DNT": "1", "Sec-GPC": "1"}, dnt: true, gpc: true, wantIP: "127.0.0.1"},
		{name: "signals only as 1", headers: map[string]string{"DNT": "0", "Sec-GPC": "yes"}, wantIP: "127.0.0.1"},
		{name: "forwarded by a trusted proxy", proxies: loopback, headers: map[string]string{"X-Forwarded-For": "2a02:8000:1234::1, " + londonIP}, wantIP: londonIP},
		{name: "forwarded by an untrusted peer", headers: map[string]string{"X-Forwarded-For": londonIP}, wantIP: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, func(o *envOptions) { o.trustedProxies = tc.proxies })
			rq := req{method: http.MethodPost, path: "/v1/track" + tc.path, body: pv, headers: tc.headers}
			if tc.cookie != "" {
				rq.cookies = []*http.Cookie{{Name: "vt_shop", Value: tc.cookie}}
			}
			if r := e.do(rq); r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			h := e.fake.lastHit(t)
			got := h
			got.Site, got.Caller = nil, visitor.Caller{}
			want := visitor.Hit{Type: visitor.HitPageview, URL: "https://shop.example/a", Title: "A", Referrer: "https://search.example/",
				Token: tc.wantTok, UserAgent: chromeUA, IP: netip.MustParseAddr(tc.wantIP), DNT: tc.dnt, GPC: tc.gpc}
			if got != want {
				t.Errorf("hit %+v, want %+v", got, want)
			}
			if h.Site.ID != "shop" || h.Caller.Raw != tc.wantTok {
				t.Errorf("hit of site %s with caller %q, want shop and the token %q verified once", h.Site.ID, h.Caller.Raw, tc.wantTok)
			}
		})
	}
}

// Invariant 8's "the identity token never travels in a URL" on every widget
// route: the token is taken from X-Visitor-Token or the cookie only, never from
// the query, over a fake domain that records what it was given.
func TestIdentityTokenNeverReadFromURL(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	token := e.fake.issue()
	q := url.Values{"site": {"shop"}}
	for _, name := range []string{"token", "vt", "vt_shop", tokenHeader, "visitor_token"} {
		q.Set(name, token)
	}
	r := e.do(req{method: http.MethodPost, path: "/v1/track?" + q.Encode(), body: `{"site":"shop","type":"pageview","url":"https://shop.example/next"}`})
	if r.status != http.StatusOK || e.fake.lastHit(t).Token != "" {
		t.Errorf("track with the token in the query: %d %s, the domain got token %q; want none", r.status, r.body, e.fake.lastHit(t).Token)
	}
	if r := e.do(req{method: http.MethodGet, path: "/v1/consent?" + q.Encode()}); r.status != http.StatusOK {
		t.Errorf("GET /v1/consent: %d %s", r.status, r.body)
	}
	if r := e.do(req{method: http.MethodGet, path: "/v1/consent?site=shop", headers: map[string]string{tokenHeader: token}}); r.status != http.StatusOK {
		t.Errorf("GET /v1/consent: %d %s", r.status, r.body)
	}
	if got := e.fake.asked; len(got) != 2 || got[0] != "" || got[1] != token {
		t.Errorf("Consent asked about %q, want no token from the query, then the header's", got)
	}
	r = e.do(req{method: http.MethodGet, path: "/v1/me?" + q.Encode()})
	wantStatus(t, r, http.StatusUnauthorized, "unauthorized")
	r = e.do(req{method: http.MethodDelete, path: "/v1/me?" + q.Encode()})
	wantStatus(t, r, http.StatusUnauthorized, "unauthorized")
	b, _ := json.Marshal(map[string]any{"site": "shop", "analytics": true, "policy_version": "2026-11"})
	if r := e.do(req{method: http.MethodPut, path: "/v1/consent?" + q.Encode(), body: string(b)}); r.status != http.StatusOK || e.fake.consents[0].Token != "" {
		t.Errorf("PUT /v1/consent with the token in the query: %d, the domain got %q", r.status, e.fake.consents[0].Token)
	}
	if b, _ := json.Marshal(map[string]any{"site": "shop", "contact": map[string]string{"name": "Ann"}}); e.do(req{method: http.MethodPost, path: "/v1/chats?" + q.Encode(), body: string(b)}).status != http.StatusCreated || e.fake.chats[0].Token != "" {
		t.Errorf("chat start with the token in the query: the domain got %q", e.fake.chats[0].Token)
	}
}
