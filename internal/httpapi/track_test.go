package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTrackEndToEnd proves the track route over the whole stack: a page view
// is minimised, stored in a session with the client's device and truncated
// IP, timed by the next one, and counted; a DNT count ping without URL is
// refused and counted. The domain's rules are pinned in visitor's
// TestTrackPrivacyPrecedence and TestTrackSessions; this reads back through the
// export and the stats routes.
func TestTrackEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behindProxy)
	r := e.pageview("shop", shopOrigin+"/products/42?utm_source=mail&email=a@b.example#top", "", map[string]string{
		"Origin": shopOrigin, "X-Forwarded-For": londonIP,
	})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	token, _ := m["token"].(string)
	if m["tracked"] != true || token == "" {
		t.Fatalf("body %s", r.body)
	}
	ck := r.cookie("vt_shop")
	if ck == nil || ck.Value != token || !ck.HttpOnly {
		t.Fatalf("identity cookie %+v", ck)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != shopOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	e.clock.Advance(10 * time.Second)
	e.mustTrack("shop", shopOrigin+"/cart", token)
	ping := e.do(req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview"}`,
		headers: map[string]string{"Origin": shopOrigin, "DNT": "1"}})
	wantRefused(t, ping, "dnt")
	wantNoCookie(t, ping)

	x := subjExportOf(e, e.visitorID("shop", token))
	if x.Profile == nil || x.Profile.Sessions != 1 || len(x.Sessions) != 1 {
		t.Fatalf("export: profile %+v, %d sessions; want one session", x.Profile, len(x.Sessions))
	}
	if s := x.Sessions[0]; s.IP != "81.2.69.0/24" || s.Device.Browser != "Chrome" {
		t.Errorf("session IP %q, browser %q; want the truncated client IP and its browser", s.IP, s.Device.Browser)
	}
	want := []string{shopOrigin + "/products/42?utm_source=mail", shopOrigin + "/cart"}
	if diff := cmp.Diff(want, x.pages()); diff != "" {
		t.Errorf("stored pages (-want +got): the query minimised, the fragment dropped:\n%s", diff)
	}
	stats := e.operatorGet("/v1/sites/shop/stats", shopOperatorKey)
	if got := decode[statsResponse](t, stats); got.Tracked != 2 || got.Refused["dnt"] != 1 {
		t.Errorf("stats = %+v; want 2 tracked, 1 refused for dnt", got)
	}
}

// Fixtures of the privacy tests, beside those of env_test.go.
const (
	originOptin  = "https://optin.example"
	originOnchat = "https://chat.example"
)

// originOf is the origin of each test site.
var originOf = map[string]string{"shop": shopOrigin, "optin": originOptin, "onchat": originOnchat, "blog": blogOrigin}

// trackWith sends a page view of site to url with headers and cookies; unlike
// e.pageview it can carry the identity as a cookie.
func trackWith(e *env, site, url string, headers map[string]string, cookies ...*http.Cookie) resp {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"site": site, "type": "pageview", "url": url, "title": "A page"})
	return e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: headers, cookies: cookies})
}

// identityCookie is the cookie a browser sends back for site.
func identityCookie(site, token string) *http.Cookie {
	return &http.Cookie{Name: cookieName(site), Value: token}
}

// wantRefused fails t unless r answers exactly {"tracked":false,"reason":reason}.
func wantRefused(t testing.TB, r resp, reason string) {
	t.Helper()
	if got, want := r.status, http.StatusOK; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, r.body)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	if diff := cmp.Diff(map[string]any{"tracked": false, "reason": reason}, got); diff != "" {
		t.Fatalf("body (-want +got):\n%s", diff)
	}
}

// wantNoCookie fails t if r sets any cookie.
func wantNoCookie(t testing.TB, r resp) {
	t.Helper()
	if sc := r.header.Values("Set-Cookie"); len(sc) != 0 {
		t.Fatalf("Set-Cookie %q, want none", sc)
	}
}

// wantExpiredCookie fails t unless r's only cookie expires the named one.
func wantExpiredCookie(t testing.TB, r resp, name string) {
	t.Helper()
	if len(r.cookies) != 1 {
		t.Fatalf("Set-Cookie %q, want exactly one expiring %s", r.header.Values("Set-Cookie"), name)
	}
	ck := r.cookies[0]
	// net/http reads Max-Age=0 (and below) as MaxAge -1.
	expired := ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now()))
	if ck.Name != name || !expired || ck.Path != "/" {
		t.Fatalf("Set-Cookie %q, want %s expired on path /", r.header.Values("Set-Cookie"), name)
	}
}

// With Redis gone, a page view answers 503 store_unavailable within the track
// timeout, /readyz fails, and both recover once Redis is back.
func TestTrackWithRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *envOptions) { o.trackTimeout, o.storeTimeout = 150*time.Millisecond, 150*time.Millisecond })
	token := e.mustTrack("shop", shopOrigin+"/", "")
	e.redis.Stop()

	start := time.Now()
	r := e.pageview("shop", shopOrigin+"/cart", token, nil)
	elapsed := time.Since(start)
	if got, want := r.status, http.StatusServiceUnavailable; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, r.body)
	}
	if got, want := r.errorCode(t), "store_unavailable"; got != want {
		t.Errorf("code %q, want %q", got, want)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 503")
	}
	// Generous bound: the budget is 150 ms; a hung request would take seconds.
	if elapsed > 2*time.Second {
		t.Errorf("503 took %s", elapsed)
	}
	if got := e.do(req{method: http.MethodGet, path: "/readyz"}).status; got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d", got)
	}

	e.redis.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = e.pageview("shop", shopOrigin+"/cart", "", nil)
		if r.status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.status != http.StatusOK {
		t.Fatalf("after Redis came back: status %d: %s", r.status, r.body)
	}
	if got := e.do(req{method: http.MethodGet, path: "/readyz"}).status; got != http.StatusOK {
		t.Errorf("/readyz after recovery = %d", got)
	}
}

// FuzzDecodeTrack feeds arbitrary bodies to the track decoder (run with
// go test -run '^$' -fuzz FuzzDecodeTrack ./internal/httpapi/). It never panics;
// a body it accepts names a site and a type; a body it refuses maps to 400
// invalid_json exactly when it is not JSON, else to 400 invalid_request.
func FuzzDecodeTrack(f *testing.F) {
	for _, s := range []string{
		`{"site":"shop","type":"pageview","url":"https://shop.example/a?utm_source=x#f","title":"A","referrer":"https://search.example/"}`,
		`{"site":"shop","type":"heartbeat"}`,
		`{"site":"shop","type":"leave"}`,
		`{"site":"shop","url":"https://shop.example/"}`,
		`{"site":"shop","type":null}`,
		`{"site":"shop","type":"click"}`,
		`{"site":"shop","site":""}`,
		``,
		` `,
		`null`,
		`{}`,
		`[]`,
		`"shop"`,
		`42`,
		`{"site":`,
		`{"site":"shop"}x`,
		`{"site":"shop"}` + "\r\n",
		`{"site":42}`,
		`{"site":["shop"],"url":{"a":[1,2,{"b":null}]}}`,
		`{"site":"shop","title":{"a":{"b":{"c":[[[[]]]]}}}}`,
		`{"site":"shop","url":1e999}`,
		`{"site":"shop","title":"\ud800"}`,
		`{"site":"\u0000"}`,
		"{\"site\":\"\xff\xfe\xfd\",\"type\":\"pageview\"}",
		"{\"site\":\"shop\",\"title\":\"\xc3\x28\"}",
		"\xef\xbb\xbf{\"site\":\"shop\"}",
		`{"site":"shop","url":"` + strings.Repeat("a", 17<<10) + `"}`,
		`{"site":"` + strings.Repeat("s", 16<<10) + `"}`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat("}", 201),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeTrack(b)
		if err == nil {
			if r.Site == "" || r.Type == "" {
				t.Fatalf("decodeTrack(%q) = %+v: accepted without site or type", b, r)
			}
			if !json.Valid(b) {
				t.Fatalf("decodeTrack(%q) accepted a body that is not JSON", b)
			}
			return
		}
		status, code, msg := statusOf(err)
		if status != http.StatusBadRequest || (code != "invalid_json" && code != "invalid_request") {
			t.Fatalf("decodeTrack(%q): %v maps to %d %s, want 400 invalid_json or invalid_request", b, err, status, code)
		}
		if msg == "" {
			t.Fatalf("decodeTrack(%q): %s without a message", b, code)
		}
		if got, want := code == "invalid_json", !json.Valid(b); got != want {
			t.Fatalf("decodeTrack(%q): code %s, but json.Valid = %v", b, code, !want)
		}
	})
}

// errorMessage is the message of an error response.
func errorMessage(t testing.TB, r resp) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// Error messages are one line naming the field; a JSON null for a field that
// is not nullable (none in a request is) is 400 naming it (issue 18).
func TestErrorMessagesAndNulls(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	shop := map[string]string{"Origin": shopOrigin}
	priv := map[string]string{"Authorization": "Bearer " + shopPrivacyKey}
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
		code, field              string // field: what the message must name
	}{
		{name: "track without site", method: http.MethodPost, path: "/v1/track", body: `{"type":"pageview"}`, code: "invalid_request", field: "site is required"},
		{name: "track body an array", method: http.MethodPost, path: "/v1/track", body: `[]`, code: "invalid_request", field: "the body must be a JSON object"},
		{name: "track site a number", method: http.MethodPost, path: "/v1/track", body: `{"site":5}`, code: "invalid_request", field: "site must be a string"},
		{name: "track body null", method: http.MethodPost, path: "/v1/track", body: `null`, code: "invalid_request", field: "the body must not be null"},
		{name: "track site null", method: http.MethodPost, path: "/v1/track", body: `{"site":null,"url":"https://shop.example/"}`, headers: shop, code: "invalid_request", field: "site must not be null"},
		{name: "track title null", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":"https://shop.example/","title":null}`, headers: shop, code: "invalid_request", field: "title must not be null"},
		{name: "track url null", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview","url":null}`, headers: shop, code: "invalid_request", field: "url must not be null"},
		{name: "track without url", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview"}`, headers: shop, code: "invalid_request", field: "url"},
		{name: "consent analytics null", method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop","analytics":null,"marketing":false,"policy_version":"2026-11"}`, headers: shop, code: "invalid_request", field: "analytics must not be null"},
		{name: "consent without fields", method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop"}`, headers: shop, code: "invalid_request", field: "analytics and policy_version are required"},
		{name: "chat contact name null", method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":{"name":null,"email":"a@mail.example"}}`, headers: shop, code: "invalid_request", field: "contact.name must not be null"},
		{name: "chat contact a string", method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":"Ann"}`, headers: shop, code: "invalid_request", field: "contact must be an object"},
		{name: "retention sessions null", method: http.MethodPut, path: "/v1/sites/shop/retention", body: `{"sessions":null,"profiles":395,"chats":90,"consents":1095,"audit":365}`, headers: priv, code: "invalid_request", field: "sessions must not be null"},
		{name: "live within garbage", method: http.MethodGet, path: "/v1/sites/shop/visitors/live?within=soon", headers: priv, code: "invalid_request", field: "within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: tc.method, path: tc.path, body: tc.body, headers: tc.headers})
			if r.status != http.StatusBadRequest || r.errorCode(t) != tc.code {
				t.Fatalf("%d %s, want 400 %s", r.status, r.body, tc.code)
			}
			msg := errorMessage(t, r)
			if strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "  ") || strings.HasPrefix(msg, "invalid request") {
				t.Errorf("message %q: want one line without the code's words or empty names", msg)
			}
			if !strings.Contains(msg, tc.field) {
				t.Errorf("message %q does not say %q", msg, tc.field)
			}
		})
	}
}
