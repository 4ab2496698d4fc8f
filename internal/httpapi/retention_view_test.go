package httpapi

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// GET retention says when the windows were last changed (nothing while the
// sites file's apply) and the bounds a change keeps to, as the console shows.
func TestRetentionChangedAt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
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

	before := time.Now().Add(-time.Second)
	days := map[string]int{"sessions": 30, "profiles": 395, "chats": 60, "consents": 1095, "audit": 400}
	r := privacyDo(e, http.MethodPut, "/v1/sites/shop/retention", days)
	if r.status != http.StatusOK {
		t.Fatalf("PUT retention: %d %s", r.status, r.body)
	}
	after := time.Now().Add(time.Second)
	put := r.json(t)
	changed, err := time.Parse(time.RFC3339Nano, put["changed_at"].(string))
	if err != nil || changed.Before(before) || changed.After(after) {
		t.Errorf("changed_at %v (%v), want the time of the PUT", put["changed_at"], err)
	}
	m = get()
	if m["changed_at"] != put["changed_at"] {
		t.Errorf("GET changed_at %v, PUT answered %v", m["changed_at"], put["changed_at"])
	}
	if diff := cmp.Diff(days, retentionDays(t, resp{body: r.body})); diff != "" {
		t.Errorf("PUT answered (-want +got):\n%s", diff)
	}
}
