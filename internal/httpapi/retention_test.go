package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
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

// cfgKeys lists the cfg: keys in Redis.
func cfgKeys(e *env) []string {
	e.t.Helper()
	return slices.DeleteFunc(e.keys(), func(k string) bool { return !strings.HasPrefix(k, "cfg:") })
}

// sessionKeyOf is the key of a visitor's current session list.
func sessionKeyOf(e *env, visitorID string) string {
	e.t.Helper()
	sid := e.current("shop", visitorID)["sid"]
	if sid == "" {
		e.t.Fatalf("visitor %s has no current session", visitorID)
	}
	return e.profileKey("shop", visitorID) + ":s:" + sid
}

const day = 24 * time.Hour

// wantTTLAtMost fails t unless key's TTL is within (days-1, days]. Keys that
// expire at an absolute time of the service's clock may outlive days by as much
// as the test moved that clock ahead of Redis's.
func wantTTLAtMost(t testing.TB, e *env, key string, days int) {
	t.Helper()
	d := pttl(e, key)
	limit := time.Duration(days)*day + max(0, e.clock.Now().Sub(time.Now())) + time.Second
	if d <= 0 || d > limit || d < time.Duration(days-1)*day {
		t.Errorf("TTL of %s is %v, want at most %d days (and more than %d)", key, d, days, days-1)
	}
}

func TestRetentionDefaultsAndAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
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
	if got := cfgKeys(e); len(got) != 0 {
		t.Errorf("refused requests wrote %q", got)
	}
	if diff := cmp.Diff(shopDefaults, getRetention(t, e)); diff != "" {
		t.Errorf("retention after refused requests (-want +got):\n%s", diff)
	}
}

// Retention changes outside the bounds (VISITORD_RETENTION_MIN_DAYS..MAX_DAYS,
// 1..1825 by default) or with consents < max(profiles, consent_valid_days) are
// 422 retention_out_of_bounds; malformed ones 400. None writes anything.
func TestRetentionRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{name: "sessions 0", body: retentionWith("sessions", 0), status: 422, code: "retention_out_of_bounds"},
		{name: "audit 1826", body: retentionWith("audit", 1826), status: 422, code: "retention_out_of_bounds"},
		{name: "profiles 1826", body: retentionWith("profiles", 1826, "consents", 1825), status: 422, code: "retention_out_of_bounds"},
		{name: "chats negative", body: retentionWith("chats", -1), status: 422, code: "retention_out_of_bounds"},
		{name: "consents 1826", body: retentionWith("consents", 1826), status: 422, code: "retention_out_of_bounds"},
		{name: "consents below profiles", body: retentionWith("profiles", 400, "consents", 399), status: 422, code: "retention_out_of_bounds"},
		{name: "consents below consent_valid_days", body: retentionWith("profiles", 30, "consents", 179), status: 422, code: "retention_out_of_bounds"},
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
	if diff := cmp.Diff(shopDefaults, getRetention(t, e)); diff != "" {
		t.Errorf("retention after rejected changes (-want +got):\n%s", diff)
	}
	if got := cfgKeys(e); len(got) != 0 {
		t.Errorf("rejected changes wrote %q", got)
	}
	if got := actions(auditEntries(t, e, "")); slices.Contains(got, "retention.change") {
		t.Errorf("a rejected change was audited as made: %q", got)
	}
}

// A valid change answers 200 and reads back; new writes use a shorter window at
// once; a longer one extends no existing key; the override lives under cfg:
// without TTL and without personal data; the change is audited.
func TestRetentionChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	// Visitor A, written under the defaults.
	tokenA := e.mustTrack("shop", shopOrigin+"/retention/a", "")
	idA := e.visitorID("shop", tokenA)
	keysA := []string{sessionKeyOf(e, idA), e.profileKey("shop", idA), e.profileKey("shop", idA) + ":S"}
	wantTTLAtMost(t, e, keysA[0], 90)
	wantTTLAtMost(t, e, keysA[1], 395)

	e.clock.Advance(time.Minute)
	putRetention(t, e, shorterRetention)
	if diff := cmp.Diff(shorterRetention, getRetention(t, e)); diff != "" {
		t.Errorf("GET after PUT (-want +got):\n%s", diff)
	}

	// New writes use the shorter windows at once.
	tokenB := e.mustTrack("shop", shopOrigin+"/retention/b", "")
	idB := e.visitorID("shop", tokenB)
	wantTTLAtMost(t, e, sessionKeyOf(e, idB), shorterRetention["sessions"])
	wantTTLAtMost(t, e, e.profileKey("shop", idB), shorterRetention["profiles"])
	wantTTLAtMost(t, e, e.profileKey("shop", idB)+":S", shorterRetention["profiles"])
	chat := subjChat(e, tokenB, "Ada Byron", "ada@engine.example", "", true, shopOrigin+"/retention/b")
	wantTTLAtMost(t, e, "ch:{shop:"+chat+"}", shorterRetention["chats"])
	wantTTLAtMost(t, e, e.profileKey("shop", idB)+":C", shorterRetention["chats"])
	wantTTLAtMost(t, e, e.profileKey("shop", idB)+":r", shorterRetention["consents"])
	wantTTLAtMost(t, e, "e:{shop:"+e.hasher.Short("shop", "email", "ada@engine.example")+"}", shorterRetention["chats"])

	// The override: under cfg:, no TTL, the five numbers and nothing personal.
	values := redistest.DumpValues(t, e.rdb)
	var override string
	for _, k := range cfgKeys(e) {
		if d := pttl(e, k); d != -1 {
			t.Errorf("configuration key %s has TTL %v, want none", k, d)
		}
		for _, leak := range []string{idA, idB, e.hasher.VisitorKey("shop", idA), e.hasher.VisitorKey("shop", idB), "/retention/", "ada@", "127.0.0", chat} {
			if strings.Contains(k, leak) || strings.Contains(values[k], leak) {
				t.Errorf("configuration key %s holds %q: %s", k, leak, values[k])
			}
		}
		if strings.Contains(k, "shop") && strings.Contains(values[k], "sessions=30") {
			override = k
		}
	}
	if override == "" {
		t.Fatalf("no cfg: key holds shop's override; cfg keys %q", cfgKeys(e))
	}
	fields, err := e.rdb.HGetAll(ctx, override).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for k, v := range shorterRetention {
		want[k] = strconv.Itoa(v)
	}
	// Beside the windows, only the time of the change (ms), which GET retention shows.
	if _, err := strconv.ParseInt(fields["t"], 10, 64); err != nil {
		t.Errorf("override %s: t %q is not the time of the change", override, fields["t"])
	}
	delete(fields, "t")
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("override %s (-want +got):\n%s", override, diff)
	}

	// A longer window applies to new writes only: no existing key gains time.
	before := map[string]time.Duration{}
	for _, k := range append(keysA, sessionKeyOf(e, idB), e.profileKey("shop", idB), "ch:{shop:"+chat+"}") {
		before[k] = pttl(e, k)
	}
	e.clock.Advance(time.Minute)
	putRetention(t, e, longerRetention)
	for k, d := range before {
		if got := pttl(e, k); got > d {
			t.Errorf("TTL of existing %s grew from %v to %v after a longer window", k, d, got)
		}
	}
	tokenC := e.mustTrack("shop", shopOrigin+"/retention/c", "")
	idC := e.visitorID("shop", tokenC)
	wantTTLAtMost(t, e, sessionKeyOf(e, idC), longerRetention["sessions"])
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
