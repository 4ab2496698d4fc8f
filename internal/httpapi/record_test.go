package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
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

// recordFixture is a record of processing as the domain builds one, small.
func recordFixture() visitor.ProcessingRecord {
	return visitor.ProcessingRecord{
		GeneratedAt: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		Controller:  visitor.RecordController{Name: "Shop Ltd", Contact: "privacy@shop.example", DPO: "dpo@shop.example"},
		Site: visitor.RecordSite{ID: "shop", Origins: []string{"https://shop.example", "https://www.shop.example"},
			ConsentMode: visitor.ConsentOptIn, ConsentMeaning: "A visit is measured once the visitor grants analytics consent.",
			ConsentValidDays: 180, PolicyVersion: "2026-11", IPMode: visitor.IPTruncate},
		Subjects: []visitor.RecordSubject{{Name: "Website visitors", Description: "People who browse the site."}, {Name: "Chat users", Description: "People who start a chat."}},
		Categories: []visitor.RecordCategory{
			{Name: "Pages visited", Description: "Page URL and title.", Subjects: []string{"Website visitors"}, Retention: "90 days after the session's last page view (sessions)"},
			{Name: "Chat contact details", Description: "Name, e-mail, phone.", Subjects: []string{"Chat users"}, Retention: "90 days from the chat's start (chats)"},
		},
		Purposes: []visitor.RecordPurpose{
			{Name: "Operating the live chat", Description: "Answering the visitor.", Categories: []string{"Chat contact details", "Pages visited"},
				LegalBases: []visitor.RecordLegalBasis{{Article: "Art. 6(1)(b) GDPR", Basis: "contract", Note: "steps at the visitor's request"}}},
			{Name: "Measuring visits", Description: "Counting pages.", Categories: []string{"Pages visited"},
				LegalBases: []visitor.RecordLegalBasis{{Article: "Art. 6(1)(a) GDPR", Basis: "consent", Note: "analytics consent"}}},
		},
		Retention: []visitor.RecordRetention{
			{Category: "sessions", Data: "pages visited", Days: 90, From: "the session's last write", Configurable: true},
			{Category: "tombstones", Data: "erased identities", Days: 395, From: "the erasure"},
		},
		Recipients: []visitor.RecordRecipient{{Kind: visitor.RecipientOperators, Name: "Chat operators", Description: "The site's operators."},
			{Kind: visitor.RecipientWebhook, Name: "crm.shop.example", Description: "The site's webhook."}},
		Transfers:  "none",
		Safeguards: []visitor.RecordSafeguard{{Name: "Encryption at rest", Description: "AES-256-GCM."}},
	}
}

// The processing record's Markdown (?format=md): every section, every table
// row, configuration strings escaped so that none breaks a table or adds a
// line or HTML, and the absence of a webhook said.
func TestRecordMarkdown(t *testing.T) {
	t.Parallel()
	t.Run("sections and rows", func(t *testing.T) {
		t.Parallel()
		md := recordMarkdown(recordFixture())
		for _, want := range []string{
			"# Record of processing activities: shop\n",
			"generated 2026-11-23T10:00:00Z from its live configuration",
			"## Controller",
			"| Controller | Shop Ltd |",
			"| Contact | privacy@shop.example |",
			"| Data protection officer | dpo@shop.example |",
			"| Origins | https://shop.example, https://www.shop.example |",
			"| Consent mode | opt-in |",
			"| Consent valid for | 180 days |",
			"| IP mode | truncate |",
			"**Consent mode opt-in.** A visit is measured once the visitor grants analytics consent.",
			"## Categories of data subjects",
			"| Website visitors | People who browse the site. |",
			"## Categories of personal data",
			"| Pages visited | Website visitors | Page URL and title. | 90 days after the session's last page view (sessions) |",
			"## Purposes and legal bases",
			"### Operating the live chat",
			"- **Legal basis:** Art. 6(1)(b) GDPR, contract: steps at the visitor's request.",
			"- **Data:** Chat contact details, Pages visited.",
			"## Retention",
			"| sessions | 90 | the session's last write | pages visited | privacy team |",
			"| tombstones | 395 | the erasure | erased identities | fixed |",
			"## Recipients",
			"- **crm.shop.example:** The site's webhook.",
			"## Transfers to third countries",
			"As declared by the controller: none",
			"## Technical and organisational measures",
			"- **Encryption at rest:** AES-256-GCM.",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("Markdown lacks %q:\n%s", want, md)
			}
		}
		if strings.Contains(md, "no webhook is configured") {
			t.Error("Markdown says no webhook is configured, with one")
		}
	})
	t.Run("escaped", func(t *testing.T) {
		t.Parallel()
		r := recordFixture()
		r.Controller.Name = "Shop | Ltd\nInjected <b>line</b>"
		r.Controller.DPO = " "
		md := recordMarkdown(r)
		if !strings.Contains(md, `| Controller | Shop \| Ltd Injected &lt;b>line&lt;/b> |`) || !strings.Contains(md, "| Data protection officer | not declared |") {
			t.Errorf("Markdown does not escape the controller or say what is not declared:\n%s", md)
		}
		if strings.Contains(md, "Shop | Ltd") || strings.Contains(md, "\nInjected") || strings.Contains(md, "<b>") {
			t.Errorf("Markdown does not escape the controller name:\n%s", md)
		}
		// Every row of a table has as many unescaped cell separators as its header.
		var cols int
		for _, l := range strings.Split(md, "\n") {
			if !strings.HasPrefix(l, "|") {
				cols = 0
				continue
			}
			n := strings.Count(l, "|") - strings.Count(l, `\|`)
			if cols == 0 {
				cols = n
			} else if n != cols {
				t.Errorf("table row %q has %d separators, its header %d", l, n, cols)
			}
		}
	})
	t.Run("without webhook", func(t *testing.T) {
		t.Parallel()
		r := recordFixture()
		r.Recipients = r.Recipients[:1]
		if md := recordMarkdown(r); !strings.Contains(md, "- No other recipient: no webhook is configured.") {
			t.Errorf("Markdown does not say that no webhook is configured:\n%s", md)
		}
	})
}

// GET processing-record renders what the domain built, as JSON or, with
// ?format=md, as Markdown; another format is 400. Over a fake domain.
func TestRecordFormats(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	const path = "/v1/sites/shop/processing-record"
	for _, tc := range []struct {
		query, ctype string
		status       int
	}{
		{query: "", ctype: "application/json", status: http.StatusOK},
		{query: "?format=json", ctype: "application/json", status: http.StatusOK},
		{query: "?format=md", ctype: "text/markdown; charset=utf-8", status: http.StatusOK},
		{query: "?format=xml", ctype: "application/json", status: http.StatusBadRequest},
	} {
		rq := req{method: http.MethodGet, path: path + tc.query, headers: map[string]string{"Authorization": "Bearer " + shopPrivacyKey}}
		r := e.do(rq)
		if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %s, want %d %s", rq.path, r.status, r.header.Get("Content-Type"), tc.status, tc.ctype)
			continue
		}
		checkContract(t, e, rq, r)
		if tc.query == "?format=md" && !strings.HasPrefix(string(r.body), "# Record of processing activities: shop\n") {
			t.Errorf("Markdown record: %.200s", r.body)
		}
	}
}
