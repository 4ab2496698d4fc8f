package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The range form of stats answers one row per UTC day, oldest first, with the
// counts each day's page views left, and checks its bounds.
func TestStatsRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	day1 := e.clock.Now().UTC().Truncate(24 * time.Hour)
	e.mustTrack("shop", shopOrigin+"/a", "")
	e.pageview("shop", shopOrigin+"/b", "", map[string]string{"DNT": "1"})
	e.clock.Advance(24 * time.Hour)
	day2 := day1.AddDate(0, 0, 1)
	e.mustTrack("shop", shopOrigin+"/c", "")
	e.mustTrack("shop", shopOrigin+"/d", "")
	e.pageview("shop", shopOrigin+"/e", "", map[string]string{"Sec-GPC": "1"})
	e.pageview("shop", shopOrigin+"/f", "", map[string]string{"User-Agent": googlebotUA})
	// Another site's views never show in shop's counts.
	e.mustTrack("blog", blogOrigin+"/", "")

	path := "/v1/sites/shop/stats?from=" + day1.AddDate(0, 0, -1).Format(time.DateOnly) + "&to=" + day2.Format(time.DateOnly)
	rq := req{method: http.MethodGet, path: path, headers: map[string]string{"Authorization": "Bearer " + shopOperatorKey}}
	r := e.do(rq)
	if r.status != http.StatusOK {
		t.Fatalf("stats range: %d %s", r.status, r.body)
	}
	checkContract(t, e, rq, r)
	var got statsRangeResponse
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	row := func(day time.Time, tracked, gpc, dnt, bot int64) statsResponse {
		return statsResponse{Day: day.Format(time.DateOnly), Tracked: tracked,
			Refused: map[string]int64{"gpc": gpc, "dnt": dnt, "bot": bot, "no_consent": 0}}
	}
	want := statsRangeResponse{From: day1.AddDate(0, 0, -1).Format(time.DateOnly), To: day2.Format(time.DateOnly), Days: []statsResponse{
		row(day1.AddDate(0, 0, -1), 0, 0, 0, 0),
		row(day1, 1, 0, 1, 0),
		row(day2, 2, 1, 0, 1),
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats range (-want +got):\n%s", diff)
	}

	// A privacy key reads it too; 90 days is the longest range.
	from90 := day2.AddDate(0, 0, -89).Format(time.DateOnly)
	r = e.operatorGet("/v1/sites/shop/stats?from="+from90+"&to="+day2.Format(time.DateOnly), shopPrivacyKey)
	if r.status != http.StatusOK {
		t.Fatalf("90 days: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Days) != 90 || got.Days[0].Day != from90 || got.Days[89].Tracked != 2 {
		t.Errorf("90 days: %d rows, first %s, last %+v", len(got.Days), got.Days[0].Day, got.Days[len(got.Days)-1])
	}

	d := func(t time.Time) string { return t.Format(time.DateOnly) }
	for _, tc := range []struct {
		name, query string
	}{
		{"91 days", "from=" + d(day2.AddDate(0, 0, -90)) + "&to=" + d(day2)},
		{"from after to", "from=" + d(day2) + "&to=" + d(day1)},
		{"from alone", "from=" + d(day1)},
		{"to alone", "to=" + d(day1)},
		{"day with a range", "day=" + d(day1) + "&from=" + d(day1) + "&to=" + d(day2)},
		{"bad from", "from=yesterday&to=" + d(day2)},
		{"bad to", "from=" + d(day1) + "&to=2026-13-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.operatorGet("/v1/sites/shop/stats?"+tc.query, shopOperatorKey)
			if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
				t.Errorf("%s: %d %s, want 400 invalid_request", tc.query, r.status, r.body)
			}
		})
	}
}
