package visitor

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var recordTestNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// recordTestSite is shop as the DESIGN.md sites file gives it.
func recordTestSite() *Site {
	return &Site{
		ID: "shop", Origins: []string{"https://shop.example", "https://www.shop.example"},
		Consent: ConsentOptIn, ConsentValidDays: 180, IP: IPTruncate,
		SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		KeepQuery:     []string{"utm_source", "utm_medium", "utm_campaign"},
		RedactPaths:   []*regexp.Regexp{regexp.MustCompile(`^/reset/`), regexp.MustCompile(`^/orders/[0-9]+`)},
		KeepTitle:     true,
		Retention:     Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365},
		PolicyVersion: "2026-11", LegalText: "We use your chat details only to answer you.",
		Controller: Controller{Name: "Shop Ltd", Contact: "privacy@shop.example", DPO: "dpo@shop.example", Transfers: "none"},
		Webhook:    Webhook{URL: "https://crm.shop.example/hooks/visitord", Secret: []byte("s")},
		Keys: []APIKey{
			{ID: "agent-1", Role: RoleOperator}, {ID: "agent-2", Role: RoleOperator}, {ID: "dpo", Role: RolePrivacy},
		},
	}
}

// recordTestService builds a Service over site with store; a nil store proves
// that ProcessingRecord reads none (any store call would panic).
func recordTestService(tb testing.TB, site *Site, store Store) *Service {
	tb.Helper()
	sites, err := NewSites([]*Site{site})
	if err != nil {
		tb.Fatal(err)
	}
	hasher, err := NewHasher(bytes.Repeat([]byte("k"), MinIndexKeyBytes))
	if err != nil {
		tb.Fatal(err)
	}
	return NewService(Deps{Sites: sites, Store: store, Hasher: hasher}, WithClock(func() time.Time { return recordTestNow }))
}

// retentionOnlyStore accepts retention overrides and audit entries; any other
// store method panics on the nil Store it embeds.
type retentionOnlyStore struct{ Store }

func (retentionOnlyStore) SaveRetention(context.Context, *Site, Retention, bool) error { return nil }
func (retentionOnlyStore) Audit(context.Context, *Site, Retention, time.Duration, ...AuditEntry) error {
	return nil
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, name(it))
	}
	return out
}

func TestProcessingRecordFromSite(t *testing.T) {
	site := recordTestSite()
	svc := recordTestService(t, site, nil)
	r := svc.ProcessingRecord(Actor{Site: site, KeyID: "dpo", Role: RolePrivacy})

	if got, want := r.GeneratedAt, recordTestNow; !got.Equal(want) {
		t.Errorf("GeneratedAt = %v, want %v", got, want)
	}
	if got, want := r.Controller, (RecordController{Name: "Shop Ltd", Contact: "privacy@shop.example", DPO: "dpo@shop.example"}); got != want {
		t.Errorf("Controller = %+v, want %+v", got, want)
	}
	if got, want := r.Site.ID, "shop"; got != want {
		t.Errorf("Site.ID = %q, want %q", got, want)
	}
	if got, want := r.Site.Origins, site.Origins; !slices.Equal(got, want) {
		t.Errorf("Site.Origins = %q, want %q", got, want)
	}
	if r.Site.ConsentMode != ConsentOptIn || r.Site.ConsentValidDays != 180 || r.Site.PolicyVersion != "2026-11" || r.Site.IPMode != IPTruncate {
		t.Errorf("Site = %+v, want opt-in, 180 days, 2026-11, truncate", r.Site)
	}
	if !strings.Contains(r.Site.ConsentMeaning, "grants analytics consent") {
		t.Errorf("ConsentMeaning = %q, want the opt-in meaning", r.Site.ConsentMeaning)
	}
	if got, want := r.Transfers, "none"; got != want {
		t.Errorf("Transfers = %q, want %q", got, want)
	}

	subjects := names(r.Subjects, func(s RecordSubject) string { return s.Name })
	if want := []string{"Website visitors", "Chat users"}; !slices.Equal(subjects, want) {
		t.Errorf("subjects = %q, want %q", subjects, want)
	}

	categories := names(r.Categories, func(c RecordCategory) string { return c.Name })
	for _, want := range []string{"Pseudonymous visitor id", "Pages visited", "Coarse location", "Device", "Referrer", "IP address", "Consent records", "Chat contact details"} {
		if !slices.Contains(categories, want) {
			t.Errorf("categories %q lack %q", categories, want)
		}
	}
	for _, c := range r.Categories {
		if c.Description == "" || c.Retention == "" || len(c.Subjects) == 0 {
			t.Errorf("category %q is incomplete: %+v", c.Name, c)
		}
		for _, s := range c.Subjects {
			if !slices.Contains(subjects, s) {
				t.Errorf("category %q names unknown data subjects %q", c.Name, s)
			}
		}
	}
	for _, tc := range []struct {
		name, category, want string
	}{
		{"location is coarse", "Coarse location", "Country, region, city and time zone"},
		{"device fields", "Device", "Browser, browser version, operating system and whether it is a mobile device"},
		{"referrer is an origin", "Referrer", "origin of an external referrer"},
		{"contacts are encrypted", "Chat contact details", "AES-256-GCM"},
		{"pages keep the allow-list", "Pages visited", "utm_source, utm_medium, utm_campaign"},
		{"pages time on page", "Pages visited", "time on page"},
		{"consent records", "Consent records", "SHA-256 of the legal text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := slices.Index(categories, tc.category)
			if i < 0 {
				t.Fatalf("no category %q", tc.category)
			}
			if !strings.Contains(r.Categories[i].Description, tc.want) {
				t.Errorf("%s = %q, want it to mention %q", tc.category, r.Categories[i].Description, tc.want)
			}
		})
	}

	purposes := names(r.Purposes, func(p RecordPurpose) string { return p.Name })
	for _, want := range []string{"Operating the live chat", "Measuring visits", "Consent proof", "Security and audit"} {
		if !slices.Contains(purposes, want) {
			t.Errorf("purposes %q lack %q", purposes, want)
		}
	}
	for _, p := range r.Purposes {
		if len(p.LegalBases) == 0 || len(p.Categories) == 0 || p.Description == "" {
			t.Errorf("purpose %q is incomplete: %+v", p.Name, p)
		}
		for _, c := range p.Categories {
			if !slices.Contains(categories, c) {
				t.Errorf("purpose %q names unknown category %q", p.Name, c)
			}
		}
	}
	articles := func(purpose string) []string {
		i := slices.Index(purposes, purpose)
		if i < 0 {
			return nil
		}
		return names(r.Purposes[i].LegalBases, func(l RecordLegalBasis) string { return l.Article })
	}
	for _, tc := range []struct{ purpose, article string }{
		{"Operating the live chat", "Art. 6(1)(b) GDPR"},
		{"Measuring visits", "Art. 6(1)(a) GDPR"},
		{"Consent proof", "Art. 6(1)(c) GDPR"},
		{"Security and audit", "Art. 6(1)(c) GDPR"},
	} {
		if got := articles(tc.purpose); !slices.Contains(got, tc.article) {
			t.Errorf("legal bases of %q = %q, want %s among them", tc.purpose, got, tc.article)
		}
	}

	recipients := names(r.Recipients, func(p RecordRecipient) string { return p.Kind + ":" + p.Name })
	if want := []string{"operators:Operators of site shop", "webhook:crm.shop.example"}; !slices.Equal(recipients, want) {
		t.Errorf("recipients = %q, want %q", recipients, want)
	}
	if d := r.Recipients[0].Description; !strings.Contains(d, "2 operator key(s)") || !strings.Contains(d, "1 privacy key(s)") {
		t.Errorf("operators recipient = %q, want its key counts", d)
	}

	var safeguards strings.Builder
	for _, s := range r.Safeguards {
		fmt.Fprintf(&safeguards, "%s: %s\n", s.Name, s.Description)
	}
	for _, want := range []string{"AES-256-GCM", "keys rotate", "HMAC-SHA256", "HKDF", "SHA-256 hashes", "time-to-live",
		"Do Not Track", "Global Privacy Control", "Audit trail", "tombstone", "ip mode (truncate)"} {
		if !strings.Contains(safeguards.String(), want) {
			t.Errorf("safeguards lack %q:\n%s", want, safeguards.String())
		}
	}
}

func TestProcessingRecordRetentionFromService(t *testing.T) {
	site := recordTestSite()
	svc := recordTestService(t, site, retentionOnlyStore{})
	actor := Actor{Site: site, KeyID: "dpo", Role: RolePrivacy}

	want := func(r Retention) map[string]int {
		return map[string]int{"sessions": r.Sessions, "profiles": r.Profiles, "chats": r.Chats, "consents": r.Consents, "audit": r.Audit,
			"tombstones": 395, "webhook queue": 3, "anonymous counters": 400}
	}
	check := func(t *testing.T, rec ProcessingRecord, want map[string]int) {
		t.Helper()
		got := map[string]int{}
		for _, e := range rec.Retention {
			got[e.Category] = e.Days
			if e.From == "" || e.Data == "" {
				t.Errorf("retention %q is incomplete: %+v", e.Category, e)
			}
		}
		if len(got) != len(want) {
			t.Errorf("retention categories = %v, want %v", got, want)
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || g != w {
				t.Errorf("retention %s = %d (present %v), want %d", k, g, ok, w)
			}
		}
	}

	check(t, svc.ProcessingRecord(actor), want(svc.Retention(site)))

	override := Retention{Sessions: 30, Profiles: 200, Chats: 60, Consents: 400, Audit: 730}
	if _, err := svc.SetRetention(context.Background(), actor, override); err != nil {
		t.Fatalf("SetRetention: %v", err)
	}
	if got := svc.Retention(site); got != override {
		t.Fatalf("Retention after SetRetention = %+v, want %+v", got, override)
	}
	rec := svc.ProcessingRecord(actor)
	check(t, rec, want(override))
	for _, tc := range []struct{ category, want string }{
		{"Pages visited", "30 days"},
		{"Chat contact details", "60 days"},
		{"Consent records", "400 days"},
		{"Pseudonymous visitor id", "200 days"},
	} {
		i := slices.IndexFunc(rec.Categories, func(c RecordCategory) bool { return c.Name == tc.category })
		if i < 0 || !strings.HasPrefix(rec.Categories[i].Retention, tc.want) {
			t.Errorf("retention of category %q does not start with the override %q: %+v", tc.category, tc.want, rec.Categories)
		}
	}
}

func TestProcessingRecordConsentModes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    ConsentMode
		article string
		note    string
		meaning string
	}{
		{"opt-in is consent", ConsentOptIn, "Art. 6(1)(a) GDPR", "analytics consent", "grants analytics consent"},
		{"on-chat is consent by the chat start", ConsentOnChat, "Art. 6(1)(a) GDPR", "chat_start", "starts a chat"},
		{"opt-out is legitimate interests with objection", ConsentOptOut, "Art. 6(1)(f) GDPR", "Global Privacy Control", "until the visitor refuses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := recordTestSite()
			site.Consent = tc.mode
			r := recordTestService(t, site, nil).ProcessingRecord(Actor{Site: site})
			i := slices.IndexFunc(r.Purposes, func(p RecordPurpose) bool { return p.Name == "Measuring visits" })
			if i < 0 {
				t.Fatal("no purpose Measuring visits")
			}
			bases := r.Purposes[i].LegalBases
			if len(bases) != 1 || bases[0].Article != tc.article || !strings.Contains(bases[0].Note, tc.note) {
				t.Errorf("legal bases of measuring = %+v, want %s mentioning %q", bases, tc.article, tc.note)
			}
			if !strings.Contains(r.Site.ConsentMeaning, tc.meaning) {
				t.Errorf("ConsentMeaning = %q, want it to mention %q", r.Site.ConsentMeaning, tc.meaning)
			}
		})
	}
}

func TestProcessingRecordIPModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode IPMode
		want string
	}{
		{"drop", IPDrop, "Not stored with visits"},
		{"truncate", IPTruncate, "/24 (IPv4) or /48 (IPv6)"},
		{"full", IPFull, "Stored in full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := recordTestSite()
			site.IP = tc.mode
			r := recordTestService(t, site, nil).ProcessingRecord(Actor{Site: site})
			if r.Site.IPMode != tc.mode {
				t.Errorf("Site.IPMode = %q, want %q", r.Site.IPMode, tc.mode)
			}
			i := slices.IndexFunc(r.Categories, func(c RecordCategory) bool { return c.Name == "IP address" })
			if i < 0 || !strings.Contains(r.Categories[i].Description, tc.want) {
				t.Errorf("IP category = %+v, want it to mention %q", r.Categories, tc.want)
			}
		})
	}
}

func TestProcessingRecordWithoutWebhook(t *testing.T) {
	site := recordTestSite()
	site.Webhook = Webhook{}
	site.Controller.Transfers = ""
	r := recordTestService(t, site, nil).ProcessingRecord(Actor{Site: site})
	if got := names(r.Recipients, func(p RecordRecipient) string { return p.Kind }); !slices.Equal(got, []string{RecipientOperators}) {
		t.Errorf("recipients = %q, want the operators only", got)
	}
	if got, want := r.Transfers, "none declared"; got != want {
		t.Errorf("Transfers = %q, want %q", got, want)
	}
}
