package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"
)

// sessionPage is one page item of a stored session.
type sessionPage struct {
	start    string
	duration string
	url      string
	title    string
}

// sessionRead reads a stored session: its header item "#<start>\t<referrer>"
// and its pages.
func sessionRead(e *env, key string) (header string, pages []sessionPage) {
	e.t.Helper()
	items, err := e.rdb.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(items) == 0 || !strings.HasPrefix(items[0], "#") {
		e.t.Fatalf("session %s: items %q, want a header first", key, items)
	}
	for _, it := range items[1:] {
		f := strings.SplitN(it, "\t", 4)
		if len(f) != 4 {
			e.t.Fatalf("session %s: page item %q has %d fields", key, it, len(f))
		}
		pages = append(pages, sessionPage{start: f[0], duration: f[1], url: f[2], title: f[3]})
	}
	return items[0], pages
}

// sessionCurrent reads the visitor's current session.
func sessionCurrent(e *env, site, visitorID string) (sid, header string, pages []sessionPage) {
	e.t.Helper()
	sid = e.current(site, visitorID)["sid"]
	if sid == "" {
		e.t.Fatalf("visitor %s of %s has no current session", visitorID, site)
	}
	header, pages = sessionRead(e, e.profileKey(site, visitorID)+":s:"+sid)
	return sid, header, pages
}

// sessionDurations lists the durations of the current session's pages.
func sessionDurations(e *env, site, visitorID string) []string {
	e.t.Helper()
	_, _, pages := sessionCurrent(e, site, visitorID)
	out := make([]string, len(pages))
	for i, p := range pages {
		out[i] = p.duration
	}
	return out
}

func sessionMS(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// sessionTrack sends a hit and fails unless it is tracked.
func sessionTrack(e *env, site, typ, pageURL, token string) {
	e.t.Helper()
	var r resp
	if typ == "pageview" {
		r = e.pageview(site, pageURL, token, nil)
	} else {
		r = e.hit(site, typ, token)
	}
	if m := r.json(e.t); r.status != http.StatusOK || m["tracked"] != true {
		e.t.Fatalf("%s at %s: status %d, body %s", typ, e.clock.Now().Format(time.TimeOnly), r.status, r.body)
	}
	if r.cookie(cookieName(site)) != nil {
		e.t.Errorf("%s of a returning visitor set the identity cookie again", typ)
	}
}

func sessionOrigin(site string) string {
	switch site {
	case "blog":
		return blogOrigin
	case "optin":
		return "https://optin.example"
	}
	return shopOrigin
}

func TestSessionStartsAfterTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		site    string
		idle    time.Duration
		wantNew bool
	}{
		{name: "shop: 29 minutes idle keeps the session", site: "shop", idle: 29 * time.Minute},
		{name: "shop: 30 minutes idle keeps the session", site: "shop", idle: 30 * time.Minute},
		{name: "shop: past 30 minutes idle starts one", site: "shop", idle: 30*time.Minute + time.Second, wantNew: true},
		{name: "shop: a day idle starts one", site: "shop", idle: 24 * time.Hour, wantNew: true},
		{name: "blog: 9 minutes idle keeps the session", site: "blog", idle: 9 * time.Minute},
		{name: "blog: past its 10 minutes idle starts one", site: "blog", idle: 10*time.Minute + time.Second, wantNew: true},
		{name: "blog: 15 minutes idle starts one", site: "blog", idle: 15 * time.Minute, wantNew: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			origin := sessionOrigin(tt.site)
			token := e.mustTrack(tt.site, origin+"/a", "")
			id := e.visitorID(tt.site, token)
			before := e.current(tt.site, id)
			firstKey := e.profileKey(tt.site, id) + ":s:" + before["sid"]

			e.clock.Advance(tt.idle)
			sessionTrack(e, tt.site, "pageview", origin+"/b", token)
			after := e.current(tt.site, id)
			sid, _, pages := sessionCurrent(e, tt.site, id)
			n, err := e.rdb.ZCard(context.Background(), e.profileKey(tt.site, id)+":S").Result()
			if err != nil {
				t.Fatal(err)
			}

			if !tt.wantNew {
				if sid != before["sid"] || after["ns"] != "1" || after["np"] != "2" || len(pages) != 2 || n != 1 {
					t.Errorf("sid %s→%s, ns %s, np %s, %d pages, %d sessions; want the same session with 2 pages",
						before["sid"], sid, after["ns"], after["np"], len(pages), n)
				}
				return
			}
			if sid == before["sid"] || sid == "" {
				t.Errorf("sid %q after %s idle, want a new one", sid, tt.idle)
			}
			if got, want := after["ns"], "2"; got != want {
				t.Errorf("ns = %s, want %s", got, want)
			}
			if got, want := after["np"], "1"; got != want {
				t.Errorf("np = %s, want %s (pages of the new session)", got, want)
			}
			if got, want := after["ss"], sessionMS(e.clock.Now()); got != want {
				t.Errorf("ss = %s, want %s (the new session starts now)", got, want)
			}
			if len(pages) != 1 || pages[0].url != origin+"/b" {
				t.Errorf("new session's pages %+v, want /b alone", pages)
			}
			if _, old := sessionRead(e, firstKey); len(old) != 1 || old[0].url != origin+"/a" {
				t.Errorf("first session's pages %+v, want /a alone", old)
			}
			if n != 2 {
				t.Errorf("%d sessions in the index, want 2", n)
			}
		})
	}
}

// TestSessionMaxRollsOverWhileActive pins session_max: on blog (1h) page views
// every 5 minutes keep one session for an hour, then the next starts a new one.
func TestSessionMaxRollsOverWhileActive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := e.clock.Now()
	token := e.mustTrack("blog", blogOrigin+"/p/0", "")
	id := e.visitorID("blog", token)
	firstSID := e.current("blog", id)["sid"]
	var rolledAt time.Duration
	for i := 1; i <= 16; i++ {
		e.clock.Advance(5 * time.Minute)
		elapsed := e.clock.Now().Sub(start)
		sessionTrack(e, "blog", "pageview", blogOrigin+"/p/"+strconv.Itoa(i), token)
		p := e.current("blog", id)
		wantNS := "1"
		if elapsed > time.Hour {
			wantNS = "2"
		}
		if p["ns"] != wantNS {
			t.Fatalf("after %s of page views every 5 minutes: ns = %s, want %s", elapsed, p["ns"], wantNS)
		}
		if rolledAt == 0 && p["sid"] != firstSID {
			rolledAt = elapsed
		}
	}
	if rolledAt != 65*time.Minute {
		t.Errorf("new session at %s, want at the first page view past session_max (65m)", rolledAt)
	}
	_, old := sessionRead(e, e.profileKey("blog", id)+":s:"+firstSID)
	if len(old) != 13 {
		t.Fatalf("first session holds %d pages, want 13 (0..60 min)", len(old))
	}
	if got, want := old[12].duration, "300000"; got != want {
		t.Errorf("last page of the first session lasted %s ms, want %s: the rollover closes it", got, want)
	}
	if got := e.current("blog", id)["np"]; got != "4" {
		t.Errorf("np = %s, want 4 (65..80 min)", got)
	}
}

func TestSessionTimeOnPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/a", "")
	id := e.visitorID("shop", token)
	steps := []struct {
		name    string
		advance time.Duration
		typ     string
		url     string
		want    []string // durations of the session's pages after the step, ms
	}{
		{name: "heartbeat after 20 s", advance: 20 * time.Second, typ: "heartbeat", want: []string{"20000"}},
		{name: "leave after 30 s closes the page", advance: 10 * time.Second, typ: "leave", want: []string{"30000"}},
		{name: "next page view does not overwrite a closed page", advance: 30 * time.Second, typ: "pageview", url: "/b", want: []string{"30000", "0"}},
		{name: "heartbeat on the second page", advance: 15 * time.Second, typ: "heartbeat", want: []string{"30000", "15000"}},
		{name: "page view without leave closes the page at its start", advance: 5 * time.Second, typ: "pageview", url: "/c", want: []string{"30000", "20000", "0"}},
		{name: "leave on the third page", advance: 4 * time.Second, typ: "leave", want: []string{"30000", "20000", "4000"}},
	}
	for _, s := range steps {
		e.clock.Advance(s.advance)
		sessionTrack(e, "shop", s.typ, shopOrigin+s.url, token)
		got := sessionDurations(e, "shop", id)
		if strings.Join(got, ",") != strings.Join(s.want, ",") {
			t.Fatalf("%s: durations %q ms, want %q", s.name, got, s.want)
		}
	}
	p := e.current("shop", id)
	if p["np"] != "3" || p["ns"] != "1" {
		t.Errorf("np %s, ns %s; want 3 pages in 1 session (heartbeat and leave add none)", p["np"], p["ns"])
	}
	if got := e.stats("shop")["tracked"]; got != "3" {
		t.Errorf("tracked counter = %s, want 3 (page views only)", got)
	}
}

func TestSessionTimeOnPageCappedAtTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		site         string
		every        time.Duration
		heartbeats   int
		thenPageview bool
		want         string
	}{
		{name: "blog: heartbeats for 30 minutes", site: "blog", every: 5 * time.Minute, heartbeats: 6, want: "600000"},
		{name: "blog: page view after heartbeats for 30 minutes", site: "blog", every: 5 * time.Minute, heartbeats: 6, thenPageview: true, want: "600000"},
		{name: "blog: under the cap", site: "blog", every: 3 * time.Minute, heartbeats: 3, want: "540000"},
		{name: "shop: heartbeats for an hour", site: "shop", every: 20 * time.Minute, heartbeats: 3, want: "1800000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			origin := sessionOrigin(tt.site)
			token := e.mustTrack(tt.site, origin+"/long-read", "")
			id := e.visitorID(tt.site, token)
			for range tt.heartbeats {
				e.clock.Advance(tt.every)
				sessionTrack(e, tt.site, "heartbeat", "", token)
			}
			if tt.thenPageview {
				e.clock.Advance(time.Second)
				sessionTrack(e, tt.site, "pageview", origin+"/next", token)
			}
			if got := sessionDurations(e, tt.site, id)[0]; got != tt.want {
				t.Errorf("time on page = %s ms, want %s", got, tt.want)
			}
		})
	}
}

// TestSessionHeartbeatAndLeaveNeedASession pins that heartbeat and leave never
// create a visitor or a session: without one they answer no_session and write
// nothing.
func TestSessionHeartbeatAndLeaveNeedASession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		site  string
		typ   string
		token func(e *env) string
	}{
		{name: "heartbeat without identity", site: "shop", typ: "heartbeat", token: func(*env) string { return "" }},
		{name: "leave without identity", site: "shop", typ: "leave", token: func(*env) string { return "" }},
		{name: "heartbeat with a foreign token", site: "shop", typ: "heartbeat", token: func(*env) string { return "forged.token" }},
		{
			name: "heartbeat after the session expired", site: "shop", typ: "heartbeat",
			token: func(e *env) string {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				e.clock.Advance(30*time.Minute + time.Second)
				return tok
			},
		},
		{
			name: "leave after the session expired", site: "blog", typ: "leave",
			token: func(e *env) string {
				tok := e.mustTrack("blog", blogOrigin+"/", "")
				e.clock.Advance(10*time.Minute + time.Second)
				return tok
			},
		},
		{
			name: "heartbeat of a consenting visitor who viewed no page", site: "optin", typ: "heartbeat",
			token: func(e *env) string {
				b := `{"site":"optin","analytics":true,"marketing":false,"policy_version":"v2"}`
				r := e.do(req{method: http.MethodPut, path: "/v1/consent", body: b})
				tok, _ := r.json(e.t)["token"].(string)
				if r.status != http.StatusOK || tok == "" {
					e.t.Fatalf("consent: status %d, body %s", r.status, r.body)
				}
				return tok
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			token := tt.token(e)
			before := redistest.DumpValues(t, e.rdb)

			r := e.hit(tt.site, tt.typ, token)
			if r.status != http.StatusOK {
				t.Fatalf("status %d, body %s", r.status, r.body)
			}
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			if len(body) != 2 || body["tracked"] != false || body["reason"] != "no_session" {
				t.Errorf("body %s, want {\"tracked\":false,\"reason\":\"no_session\"}", r.body)
			}
			if sc := identitySetCookie(r, cookieName(tt.site)); sc != "" {
				t.Errorf("Set-Cookie %q", sc)
			}

			after := redistest.DumpValues(t, e.rdb)
			for k, v := range after {
				old, ok := before[k]
				switch {
				case !ok:
					t.Errorf("%s wrote key %q:\n%s", tt.typ, k, v)
				case strings.HasPrefix(k, "lv:"):
					// Derived data: an expired session may leave the live set.
					if len(strings.Split(v, "\n")) > len(strings.Split(old, "\n")) {
						t.Errorf("%s added to the live set: %q → %q", tt.typ, old, v)
					}
				case v != old:
					t.Errorf("%s changed key %q:\n\tbefore %q\n\tafter  %q", tt.typ, k, old, v)
				}
			}
		})
	}
}

// TestSessionStoresMinimisedPage reads back what a page view stored (invariant 5).
func TestSessionStoresMinimisedPage(t *testing.T) {
	t.Parallel()
	longPath := "/" + strings.Repeat("p", 1500)
	tests := []struct {
		name         string
		site         string
		url          string
		title        string
		referrer     string
		wantURL      string
		wantTitle    string
		wantReferrer string
		absent       []string // what no stored value may hold
	}{
		{
			name: "query allow-list and fragment", site: "shop",
			url:     shopOrigin + "/products/42?utm_source=mail&utm_term=x&email=jane%40mail.example#reviews",
			title:   "Blue mug",
			wantURL: shopOrigin + "/products/42?utm_source=mail", wantTitle: "Blue mug",
			absent: []string{"email", "jane", "utm_term", "reviews"},
		},
		{
			name: "default utm_* and keep_title false", site: "blog",
			url:     blogOrigin + "/post?utm_term=x&utm_source=y&id=93817#c",
			title:   "Draft: private notes",
			wantURL: blogOrigin + "/post?utm_term=x&utm_source=y", wantTitle: "",
			absent: []string{"id=93817", "Draft", "private"},
		},
		{
			name: "redacted path", site: "shop",
			url:     shopOrigin + "/orders/98765/invoice?utm_source=mail",
			title:   "Order 98765",
			wantURL: shopOrigin + "/:redacted", wantTitle: "", // a redacted path's title goes with it
			absent: []string{"/orders/", "invoice"},
		},
		{
			name: "external referrer kept as its origin", site: "shop",
			url: shopOrigin + "/", referrer: "https://www.search.example/search?q=jane+doe+address",
			wantURL: shopOrigin + "/", wantTitle: "A page", wantReferrer: "https://www.search.example",
			absent: []string{"jane", "/search"},
		},
		{
			name: "internal referrer kept as its path", site: "shop",
			url: shopOrigin + "/checkout", referrer: shopOrigin + "/cart?coupon=SECRET42#pay",
			wantURL: shopOrigin + "/checkout", wantTitle: "A page", wantReferrer: "/cart",
			absent: []string{"SECRET42", "coupon"},
		},
		{
			name: "internal referrer redacted", site: "shop",
			url: shopOrigin + "/", referrer: shopOrigin + "/reset/tok-5f4e3d",
			wantURL: shopOrigin + "/", wantTitle: "A page", wantReferrer: "/:redacted",
			absent: []string{"tok-5f4e3d", "/reset/"},
		},
		{
			name: "title folded to one line", site: "shop",
			url: shopOrigin + "/", title: "Blue\tmug\nsale\r\n",
			wantURL: shopOrigin + "/", wantTitle: "Blue mug sale",
		},
		{
			name: "title cut to 200 bytes on a character boundary", site: "shop",
			url: shopOrigin + "/", title: strings.Repeat("é", 150),
			wantURL: shopOrigin + "/", wantTitle: strings.Repeat("é", 100),
		},
		{
			name: "url cut to 1 KiB", site: "shop",
			url:     shopOrigin + longPath,
			wantURL: (shopOrigin + longPath)[:1024], wantTitle: "A page",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			title := tt.title
			if title == "" && tt.site != "blog" {
				title = "A page"
			}
			b, _ := json.Marshal(map[string]string{"site": tt.site, "type": "pageview", "url": tt.url, "title": title, "referrer": tt.referrer})
			r := e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b)})
			m := r.json(t)
			if r.status != http.StatusOK || m["tracked"] != true {
				t.Fatalf("status %d, body %s", r.status, r.body)
			}
			id := e.visitorID(tt.site, m["token"].(string))
			_, header, pages := sessionCurrent(e, tt.site, id)
			if got, want := header, "#"+sessionMS(e.clock.Now())+"\t"+tt.wantReferrer; got != want {
				t.Errorf("session header %q, want %q", got, want)
			}
			if len(pages) != 1 {
				t.Fatalf("pages %+v", pages)
			}
			if got := pages[0].url; got != tt.wantURL {
				t.Errorf("stored url %q, want %q", got, tt.wantURL)
			}
			if got := pages[0].title; got != tt.wantTitle {
				t.Errorf("stored title %q, want %q", got, tt.wantTitle)
			}
			p := e.current(tt.site, id)
			if p["rf"] != tt.wantReferrer || p["cu"] != tt.wantURL || p["ct"] != tt.wantTitle {
				t.Errorf("profile rf %q, cu %q, ct %q; want the minimised referrer, url and title", p["rf"], p["cu"], p["ct"])
			}
			if len(pages[0].url) > 1024 || len(pages[0].title) > 200 {
				t.Errorf("url %d bytes, title %d bytes", len(pages[0].url), len(pages[0].title))
			}
			for k, v := range redistest.DumpValues(t, e.rdb) {
				for _, s := range tt.absent {
					if strings.Contains(v, s) {
						t.Errorf("key %q holds %q:\n%s", k, s, v)
					}
				}
			}
		})
	}
}

// TestSessionRejectsURLAndWritesNothing pins that a page view whose URL is not
// the site's (422) or not an http(s) URL (400) writes nothing, for a new or a
// returning visitor.
func TestSessionRejectsURLAndWritesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		url       string
		returning bool
		status    int
		code      string
	}{
		{name: "other origin", url: "https://evil.example/products/42", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "other site's origin", url: blogOrigin + "/post", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "other scheme", url: "http://shop.example/", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "other origin, returning visitor", url: "https://evil.example/", returning: true, status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "ftp", url: "ftp://shop.example/file", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "javascript", url: "javascript:alert(1)", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "relative", url: "/products/42", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "relative, returning visitor", url: "/products/42", returning: true, status: http.StatusBadRequest, code: "invalid_request"},
		{name: "missing", url: "", status: http.StatusBadRequest, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			token := ""
			if tt.returning {
				token = e.mustTrack("shop", shopOrigin+"/", "")
			}
			before := redistest.DumpValues(t, e.rdb)
			e.clock.Advance(time.Minute)

			r := e.pageview("shop", tt.url, token, map[string]string{"Origin": shopOrigin})
			if r.status != tt.status || r.errorCode(t) != tt.code {
				t.Fatalf("status %d, body %s; want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if len(r.cookies) != 0 {
				t.Errorf("cookies set: %v", r.cookies)
			}
			after := redistest.DumpValues(t, e.rdb)
			if len(after) != len(before) {
				t.Errorf("keys %d → %d: %q", len(before), len(after), e.keys())
			}
			for k, v := range after {
				if before[k] != v {
					t.Errorf("key %q changed:\n\tbefore %q\n\tafter  %q", k, before[k], v)
				}
			}
		})
	}
}
