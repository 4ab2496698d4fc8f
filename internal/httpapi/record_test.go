package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordSites is testSites with shop's controller declared.
var recordSites = strings.Replace(testSites,
	"    legal_text: \"We record the pages you visit to help our chat team.\"\n",
	"    legal_text: \"We record the pages you visit to help our chat team.\"\n"+
		"    controller: {name: \"Shop Ltd\", contact: \"privacy@shop.example\", dpo: \"dpo@shop.example\", transfers: \"none\"}\n", 1)

type recordView struct {
	Controller struct {
		Name    string `json:"name"`
		Contact string `json:"contact"`
		DPO     string `json:"dpo"`
	} `json:"controller"`
	Site struct {
		ID string `json:"id"`
	} `json:"site"`
	Retention []struct {
		Category string `json:"category"`
		Days     int    `json:"days"`
	} `json:"retention"`
	Transfers string `json:"transfers"`
}

func (r recordView) days() map[string]int {
	out := map[string]int{}
	for _, t := range r.Retention {
		if _, ok := shopDefaults[t.Category]; ok {
			out[t.Category] = t.Days
		}
	}
	return out
}

// The record of processing (GDPR Art. 30) is built from the live configuration:
// a retention change shows in its JSON and its Markdown at once.
func TestProcessingRecord(t *testing.T) {
	t.Parallel()
	if !strings.Contains(recordSites, "Shop Ltd") {
		t.Fatal("recordSites: testSites changed; the controller was not added")
	}
	e := newEnv(t, func(o *envOptions) { o.sites = recordSites })
	const path = "/v1/sites/shop/processing-record"

	r := privacyDo(e, http.MethodGet, path, nil)
	wantStatus(t, r, http.StatusOK, "")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	rec := decode[recordView](t, r)
	if rec.Controller.Name != "Shop Ltd" || rec.Controller.Contact != "privacy@shop.example" || rec.Controller.DPO != "dpo@shop.example" {
		t.Errorf("controller %+v, want the sites file's", rec.Controller)
	}
	if rec.Site.ID != "shop" || rec.Transfers != "none" {
		t.Errorf("site %q transfers %q", rec.Site.ID, rec.Transfers)
	}
	if diff := cmp.Diff(shopDefaults, rec.days()); diff != "" {
		t.Errorf("retention in the record (-want +got):\n%s", diff)
	}
	md := privacyDo(e, http.MethodGet, path+"?format=md", nil)
	wantStatus(t, md, http.StatusOK, "")
	if ct := md.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/markdown") {
		t.Errorf("Markdown Content-Type %q", ct)
	}
	for _, want := range []string{"Shop Ltd", "dpo@shop.example", "| sessions | 90 |", "| profiles | 395 |", "| consents | 1095 |"} {
		if !strings.Contains(string(md.body), want) {
			t.Errorf("Markdown record lacks %q:\n%s", want, md.body)
		}
	}

	putRetention(t, e, shorterRetention)
	rec = decode[recordView](t, privacyDo(e, http.MethodGet, path, nil))
	if diff := cmp.Diff(shorterRetention, rec.days()); diff != "" {
		t.Errorf("retention in the record after the change (-want +got):\n%s", diff)
	}
	md = privacyDo(e, http.MethodGet, path+"?format=md", nil)
	for cat, days := range shorterRetention {
		if want := "| " + cat + " | " + strconv.Itoa(days) + " |"; !strings.Contains(string(md.body), want) {
			t.Errorf("Markdown record after the change lacks %q:\n%s", want, md.body)
		}
		if old := "| " + cat + " | " + strconv.Itoa(shopDefaults[cat]) + " |"; shopDefaults[cat] != days && strings.Contains(string(md.body), old) {
			t.Errorf("Markdown record after the change still has %q", old)
		}
	}

	tests := []struct {
		name   string
		key    string
		query  string
		status int
		code   string
	}{
		{name: "operator json", key: shopOperatorKey, status: 403, code: "forbidden"},
		{name: "operator markdown", key: shopOperatorKey, query: "?format=md", status: 403, code: "forbidden"},
		{name: "another site's key", key: blogOperatorKey, status: 403, code: "forbidden"},
		{name: "no key", status: 401, code: "unauthorized"},
		{name: "unknown format", key: shopPrivacyKey, query: "?format=xml", status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := keyDo(e, tt.key, http.MethodGet, path+tt.query, nil)
			wantStatus(t, r, tt.status, tt.code)
			if strings.Contains(string(r.body), "Shop Ltd") {
				t.Errorf("refused request shows the record: %s", r.body)
			}
		})
	}
}
