package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// Retention windows (DESIGN.md, "Privacy team" and Storage) and the record of
// processing built from them.

// shopDefaults is shop's retention in the sites file: the built-in defaults.
var shopDefaults = map[string]int{"sessions": 90, "profiles": 395, "chats": 90, "consents": 1095, "audit": 365}

// shorterRetention and longerRetention are valid windows of shop (consent_valid_days 180);
// audit stays at VISITORD_AUDIT_MIN_DAYS' default, the shortest a privacy key may set.
var (
	shorterRetention = map[string]int{"sessions": 30, "profiles": 200, "chats": 60, "consents": 400, "audit": 365}
	longerRetention  = map[string]int{"sessions": 120, "profiles": 395, "chats": 90, "consents": 1095, "audit": 365}
)

// retentionWith is shop's defaults with the given fields changed.
func retentionWith(kv ...any) map[string]any {
	m := map[string]any{}
	for k, v := range shopDefaults {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// getRetention reads shop's retention through the API.
func getRetention(t testing.TB, e *env) map[string]int {
	t.Helper()
	r := privacyDo(e, http.MethodGet, "/v1/sites/shop/retention", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET retention: status %d: %s", r.status, r.body)
	}
	return retentionDays(t, r)
}

// retentionDays is the five windows of a retention answer, without the time
// of the last change and the bounds beside them.
func retentionDays(t testing.TB, r resp) map[string]int {
	t.Helper()
	m := decode[map[string]any](t, r)
	out := map[string]int{}
	for _, k := range []string{"sessions", "profiles", "chats", "consents", "audit"} {
		if v, ok := m[k].(float64); ok {
			out[k] = int(v)
		}
	}
	return out
}

// putRetention sets shop's retention through the API; it must answer 200 with it.
func putRetention(t testing.TB, e *env, days map[string]int) {
	t.Helper()
	r := privacyDo(e, http.MethodPut, "/v1/sites/shop/retention", days)
	if r.status != http.StatusOK {
		t.Fatalf("PUT retention %v: status %d: %s", days, r.status, r.body)
	}
	if diff := cmp.Diff(days, retentionDays(t, r)); diff != "" {
		t.Fatalf("PUT retention answered (-want +got):\n%s", diff)
	}
}

// expiries reads when every key in Redis expires (zero for none): a scan over
// all keys, to compare expiries before and after a change.
func expiries(e *env) map[string]time.Time {
	e.t.Helper()
	out := map[string]time.Time{}
	for _, k := range e.keys() {
		d, err := e.rdb.PExpireTime(context.Background(), k).Result()
		if err != nil {
			e.t.Fatal(err)
		}
		if d > 0 {
			out[k] = time.UnixMilli(d.Milliseconds()).UTC()
		} else {
			out[k] = time.Time{}
		}
	}
	return out
}

// fakeRetention is the retention the fake domain was last given, nil if none.
func fakeRetention(e *env) *visitor.Retention {
	e.fake.mu.Lock()
	defer e.fake.mu.Unlock()
	return e.fake.retention
}

// The retention routes' access: the privacy key of the site reads and writes
// them, any other key is refused before the domain is asked. GET answers the
// sites file's windows until a change.
func TestRetentionDefaultsAndAccess(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	if diff := cmp.Diff(shopDefaults, getRetention(t, e)); diff != "" {
		t.Errorf("GET retention (-want +got):\n%s", diff)
	}
	tests := []struct {
		name   string
		key    string
		method string
		path   string
		status int
		code   string
	}{
		{name: "operator reads", key: shopOperatorKey, method: http.MethodGet, path: "/v1/sites/shop/retention", status: 403, code: "forbidden"},
		{name: "operator writes", key: shopOperatorKey, method: http.MethodPut, path: "/v1/sites/shop/retention", status: 403, code: "forbidden"},
		{name: "another site's key", key: blogOperatorKey, method: http.MethodPut, path: "/v1/sites/shop/retention", status: 403, code: "forbidden"},
		{name: "privacy key on another site", key: shopPrivacyKey, method: http.MethodPut, path: "/v1/sites/blog/retention", status: 403, code: "forbidden"},
		{name: "no key", method: http.MethodPut, path: "/v1/sites/shop/retention", status: 401, code: "unauthorized"},
		{name: "unknown site", key: shopPrivacyKey, method: http.MethodGet, path: "/v1/sites/nope/retention", status: 404, code: "unknown_site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, keyDo(e, tt.key, tt.method, tt.path, shorterRetention), tt.status, tt.code)
		})
	}
	if got := fakeRetention(e); got != nil {
		t.Errorf("refused requests set retention %+v", got)
	}
}

// Malformed retention changes are 400 (415 for a body that is not JSON's
// type) before the domain is asked; the domain's refusals map to 422
// retention_out_of_bounds. The domain's rules (bounds, consents at least
// profiles and consent_valid_days, the audit floor, nothing written or audited
// when refused) are visitor's TestSetRetention.
func TestRetentionRejected(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	tests := []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{name: "sessions 0", body: retentionWith("sessions", 0), status: 422, code: "retention_out_of_bounds"},
		{name: "audit 1826", body: retentionWith("audit", 1826), status: 422, code: "retention_out_of_bounds"},
		{name: "chats negative", body: retentionWith("chats", -1), status: 422, code: "retention_out_of_bounds"},
		{name: "missing audit", body: `{"sessions":30,"profiles":200,"chats":60,"consents":400}`, status: 400, code: "invalid_request"},
		{name: "null sessions", body: retentionWith("sessions", nil), status: 400, code: "invalid_request"},
		{name: "days as text", body: retentionWith("chats", "60"), status: 400, code: "invalid_request"},
		{name: "fractional days", body: retentionWith("chats", 1.5), status: 400, code: "invalid_request"},
		{name: "not json", body: `{"sessions":`, status: 400, code: "invalid_json"},
		{name: "text/plain", body: `{}`, ctype: "text/plain", status: 415, code: "unsupported_media_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ctype == "" {
				wantStatus(t, privacyDo(e, http.MethodPut, "/v1/sites/shop/retention", tt.body), tt.status, tt.code)
				return
			}
			r := e.do(req{method: http.MethodPut, path: "/v1/sites/shop/retention", body: tt.body.(string), ctype: tt.ctype,
				headers: map[string]string{"Authorization": "Bearer " + shopPrivacyKey}})
			wantStatus(t, r, tt.status, tt.code)
		})
	}
	if got := fakeRetention(e); got != nil {
		t.Errorf("rejected changes set retention %+v", got)
	}
}

// TestRetentionChange proves the retention routes over the whole stack: a
// valid change answers 200 and reads back; new writes use a shorter window at
// once; a longer one extends no existing key; the override lives under cfg:
// without TTL and without personal data; both changes are audited. The rules
// are visitor's TestSetRetention and redisstore's re-expiry tests; this reads
// back through the API and scans of every key.
func TestRetentionChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Visitor A, written under the defaults.
	tokenA := e.mustTrack("shop", shopOrigin+"/retention/a", "")
	idA := e.visitorID("shop", tokenA)

	e.clock.Advance(time.Minute)
	putRetention(t, e, shorterRetention)
	if diff := cmp.Diff(shorterRetention, getRetention(t, e)); diff != "" {
		t.Errorf("GET after PUT (-want +got):\n%s", diff)
	}

	// New writes use the shorter windows at once: no key of visitor B or of
	// its chat (its consent records included, 1095 days under the defaults)
	// outlives the longest of them.
	tokenB := e.mustTrack("shop", shopOrigin+"/retention/b", "")
	idB := e.visitorID("shop", tokenB)
	chat := subjChat(e, tokenB, "Ada Byron", "ada@engine.example", "", true, shopOrigin+"/retention/b")
	vkeyB := e.hasher.VisitorKey("shop", idB)
	limit := e.clock.Now().Add(time.Duration(shorterRetention["consents"])*day + time.Second)
	values := redistest.DumpValues(t, e.rdb)
	owned := 0
	for k, at := range expiries(e) {
		// Site-wide keys (audit, counters, configuration, the live and
		// subject indexes) are shared by every subject.
		if strings.HasPrefix(k, "au:") || strings.HasPrefix(k, "st:") || strings.HasPrefix(k, "cfg:") || strings.HasPrefix(k, "lv:") || strings.HasPrefix(k, "sj:") {
			continue
		}
		if strings.Contains(k, vkeyB) || strings.Contains(k, chat) || strings.Contains(values[k], vkeyB) || strings.Contains(values[k], chat) {
			owned++
			if at.IsZero() || at.After(limit) {
				t.Errorf("%s of visitor B expires at %v, after the shorter windows' %v", k, at, limit)
			}
		}
	}
	if owned == 0 {
		t.Fatal("no key holds visitor B")
	}

	// The override: under cfg:, no TTL, nothing personal.
	var cfg int
	for k, at := range expiries(e) {
		if !strings.HasPrefix(k, "cfg:") {
			continue
		}
		cfg++
		if !at.IsZero() {
			t.Errorf("configuration key %s expires at %v, want never", k, at)
		}
		for _, leak := range []string{idA, idB, e.hasher.VisitorKey("shop", idA), vkeyB, "/retention/", "ada@", "127.0.0", chat} {
			if strings.Contains(k, leak) || strings.Contains(values[k], leak) {
				t.Errorf("configuration key %s holds %q: %s", k, leak, values[k])
			}
		}
	}
	if cfg == 0 {
		t.Fatal("no cfg: key holds the override")
	}

	// A longer window applies to new writes only: no existing key gains time.
	before := expiries(e)
	e.clock.Advance(time.Minute)
	putRetention(t, e, longerRetention)
	for k, at := range expiries(e) {
		if was, ok := before[k]; ok && !strings.HasPrefix(k, "au:") && at.After(was) {
			t.Errorf("%s expired at %v, at %v after a longer window", k, was, at)
		}
	}
	if diff := cmp.Diff(longerRetention, getRetention(t, e)); diff != "" {
		t.Errorf("GET after the longer PUT (-want +got):\n%s", diff)
	}

	// Audited: two changes by the privacy key, the site as a keyed hash.
	var changes []auditEntryJSON
	for _, a := range auditEntries(t, e, "") {
		if a.Action == "retention.change" {
			changes = append(changes, a)
		}
	}
	if len(changes) != 2 {
		t.Fatalf("audit has %d retention.change entries, want 2", len(changes))
	}
	for _, a := range changes {
		if a.Actor != "dpo" || a.Target != auditTarget(e, "shop", "site", "shop") {
			t.Errorf("retention.change entry %+v, want actor dpo and the site's keyed hash", a)
		}
	}
	if got := actions(auditEntries(t, e, "?target=shop")); !slices.Equal(got, []string{"retention.change", "retention.change"}) {
		t.Errorf("audit ?target=shop: %q", got)
	}
}

const day = 24 * time.Hour

// GET retention says when the windows were last changed (nothing while the
// sites file's apply) and the bounds a change keeps to, as the console shows;
// PUT answers the same. Over a fake domain: that the store keeps the time is
// redisstore's TestRetentionChanged.
func TestRetentionChangedAt(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	get := func() map[string]any {
		t.Helper()
		rq := req{method: http.MethodGet, path: "/v1/sites/shop/retention", headers: map[string]string{"Authorization": "Bearer " + shopPrivacyKey}}
		r := e.do(rq)
		if r.status != http.StatusOK {
			t.Fatalf("GET retention: %d %s", r.status, r.body)
		}
		checkContract(t, e, rq, r)
		return r.json(t)
	}
	m := get()
	if _, ok := m["changed_at"]; ok {
		t.Errorf("changed_at before any change: %v", m)
	}
	if m["min_days"] != float64(1) || m["max_days"] != float64(1825) {
		t.Errorf("bounds %v..%v, want 1..1825", m["min_days"], m["max_days"])
	}

	days := map[string]int{"sessions": 30, "profiles": 395, "chats": 60, "consents": 1095, "audit": 400}
	r := privacyDo(e, http.MethodPut, "/v1/sites/shop/retention", days)
	if r.status != http.StatusOK {
		t.Fatalf("PUT retention: %d %s", r.status, r.body)
	}
	put := r.json(t)
	changed, err := time.Parse(time.RFC3339Nano, put["changed_at"].(string))
	if err != nil || !changed.Equal(e.clock.Now()) {
		t.Errorf("changed_at %v (%v), want the time of the PUT, %s", put["changed_at"], err, e.clock.Now())
	}
	m = get()
	if m["changed_at"] != put["changed_at"] {
		t.Errorf("GET changed_at %v, PUT answered %v", m["changed_at"], put["changed_at"])
	}
	if diff := cmp.Diff(days, retentionDays(t, resp{body: r.body})); diff != "" {
		t.Errorf("PUT answered (-want +got):\n%s", diff)
	}
}
