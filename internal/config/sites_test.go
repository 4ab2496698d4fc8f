package config_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/visitor"
)

// webhookSecret is DEMO_WEBHOOK_SECRET of the tests: 40 bytes.
const webhookSecret = "whsec-0123456789abcdef0123456789abcdef01"

// siteCmp compares sites with their redact regexps by source text.
var siteCmp = cmp.Options{
	cmp.Comparer(func(a, b *regexp.Regexp) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.String() == b.String()
	}),
}

func sum(key string) [32]byte { return sha256.Sum256([]byte(key)) }

func sumHex(key string) string {
	s := sum(key)
	return hex.EncodeToString(s[:])
}

// designExample is the sites file of DESIGN.md's Configuration section, with
// real hashes in place of the placeholders.
var designExample = `
sites:
  - id: demo
    origins: ["https://shop.example"]
    consent: opt-in            # opt-in | on-chat | opt-out
    consent_valid_days: 180
    ip: truncate               # drop | truncate | full
    session_timeout: 30m
    session_max: 4h
    keep_query: [utm_source, utm_medium, utm_campaign]
    redact_paths: ["^/reset/", "^/orders/[0-9]+"]
    keep_title: true
    retention_days: {sessions: 90, profiles: 395, chats: 90, consents: 1095, audit: 365}
    policy_version: "2026-11"
    legal_text: "We use your chat details only to answer you."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example", dpo: "dpo@shop.example", transfers: "none"}
    webhook: {url: "https://crm.shop.example/hooks/visitord", secret_env: DEMO_WEBHOOK_SECRET}
    rate_limit: {new_visitors_per_minute: 900, chats_per_minute: 5, consent_per_minute: 20}
    keys:
      - {id: agent-1, role: operator, sha256: "` + sumHex("agent-key") + `"}
      - {id: dpo, role: privacy, sha256: "` + strings.ToUpper(sumHex("dpo-key")) + `"}
`

func webhookEnv() func(string) string {
	return mapEnv(map[string]string{"DEMO_WEBHOOK_SECRET": webhookSecret})
}

func TestParseSitesDesignExample(t *testing.T) {
	t.Parallel()
	sites, err := config.ParseSites([]byte(designExample), webhookEnv(), 1, 1825)
	if err != nil {
		t.Fatalf("ParseSites(DESIGN example): %v", err)
	}
	want := []*visitor.Site{{
		ID:               "demo",
		Origins:          []string{"https://shop.example"},
		Consent:          visitor.ConsentOptIn,
		ConsentValidDays: 180,
		IP:               visitor.IPTruncate,
		SessionTimeout:   30 * time.Minute,
		SessionMax:       4 * time.Hour,
		KeepQuery:        []string{"utm_source", "utm_medium", "utm_campaign"},
		RedactPaths:      []*regexp.Regexp{regexp.MustCompile("^/reset/"), regexp.MustCompile("^/orders/[0-9]+")},
		KeepTitle:        true,
		Retention:        visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365},
		PolicyVersion:    "2026-11",
		LegalText:        "We use your chat details only to answer you.",
		Controller:       visitor.Controller{Name: "Shop Ltd", Contact: "privacy@shop.example", DPO: "dpo@shop.example", Transfers: "none"},
		Webhook:          visitor.Webhook{URL: "https://crm.shop.example/hooks/visitord", Secret: []byte(webhookSecret)},
		RateLimit:        visitor.RateLimit{NewVisitorsPerMinute: 900, ChatsPerMinute: 5, ConsentPerMinute: 20},
		Keys: []visitor.APIKey{
			{ID: "agent-1", Role: visitor.RoleOperator, SHA256: sum("agent-key")},
			{ID: "dpo", Role: visitor.RolePrivacy, SHA256: sum("dpo-key")},
		},
	}}
	if diff := cmp.Diff(want, sites, siteCmp); diff != "" {
		t.Errorf("sites (-want +got):\n%s", diff)
	}
}

func TestParseSitesDefaults(t *testing.T) {
	t.Parallel()
	sites, err := config.ParseSites([]byte("sites:\n  - id: shop\n    origins: [\"HTTPS://Shop.Example:443/\"]\n"), mapEnv(nil), 1, 1825)
	if err != nil {
		t.Fatalf("ParseSites: %v", err)
	}
	want := []*visitor.Site{{
		ID:               "shop",
		Origins:          []string{"https://shop.example"}, // as browsers send Origin
		Consent:          visitor.ConsentOptIn,
		ConsentValidDays: 180,
		IP:               visitor.IPTruncate,
		SessionTimeout:   30 * time.Minute,
		SessionMax:       4 * time.Hour,
		KeepQuery:        []string{"utm_*"},
		KeepTitle:        true,
		Retention:        visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365},
		PolicyVersion:    "1",
		Controller:       visitor.Controller{Transfers: "none"},
		RateLimit:        visitor.RateLimit{NewVisitorsPerMinute: 600, ChatsPerMinute: 5, ConsentPerMinute: 20},
	}}
	if diff := cmp.Diff(want, sites, siteCmp, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestParseSitesExplicitValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string
		check func(t *testing.T, s *visitor.Site)
	}{
		{name: "empty keep_query keeps no parameter", extra: "keep_query: []", check: func(t *testing.T, s *visitor.Site) {
			if len(s.KeepQuery) != 0 {
				t.Errorf("KeepQuery = %v, want none", s.KeepQuery)
			}
		}},
		{name: "keep_title false", extra: "keep_title: false", check: func(t *testing.T, s *visitor.Site) {
			if s.KeepTitle {
				t.Error("KeepTitle = true, want false")
			}
		}},
		{name: "partial retention keeps the other defaults", extra: "retention_days: {sessions: 30}", check: func(t *testing.T, s *visitor.Site) {
			want := visitor.Retention{Sessions: 30, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}
			if s.Retention != want {
				t.Errorf("Retention = %+v, want %+v", s.Retention, want)
			}
		}},
		{name: "partial rate_limit keeps the other defaults", extra: "rate_limit: {new_visitors_per_minute: 2000}", check: func(t *testing.T, s *visitor.Site) {
			want := visitor.RateLimit{NewVisitorsPerMinute: 2000, ChatsPerMinute: 5, ConsentPerMinute: 20}
			if s.RateLimit != want {
				t.Errorf("RateLimit = %+v, want %+v", s.RateLimit, want)
			}
		}},
		{name: "on-chat with ip drop", extra: "consent: on-chat\n    ip: drop", check: func(t *testing.T, s *visitor.Site) {
			if s.Consent != visitor.ConsentOnChat || s.IP != visitor.IPDrop {
				t.Errorf("Consent %q, IP %q, want on-chat, drop", s.Consent, s.IP)
			}
		}},
		{name: "session_max equal to session_timeout", extra: "session_timeout: 1m\n    session_max: 1m", check: func(t *testing.T, s *visitor.Site) {
			if s.SessionTimeout != time.Minute || s.SessionMax != time.Minute {
				t.Errorf("SessionTimeout %v, SessionMax %v, want 1m, 1m", s.SessionTimeout, s.SessionMax)
			}
		}},
		{name: "webhook http to 127.0.0.1", extra: `webhook: {url: "http://127.0.0.1:9000/hook", secret_env: DEMO_WEBHOOK_SECRET}`, check: func(t *testing.T, s *visitor.Site) {
			if s.Webhook.URL != "http://127.0.0.1:9000/hook" {
				t.Errorf("Webhook.URL = %q", s.Webhook.URL)
			}
		}},
		{name: "webhook http to localhost", extra: `webhook: {url: "http://localhost:9000/hook", secret_env: DEMO_WEBHOOK_SECRET}`, check: func(t *testing.T, s *visitor.Site) {
			if s.Webhook.URL != "http://localhost:9000/hook" {
				t.Errorf("Webhook.URL = %q", s.Webhook.URL)
			}
		}},
		{name: "webhook http to ::1", extra: `webhook: {url: "http://[::1]:9000/hook", secret_env: DEMO_WEBHOOK_SECRET}`, check: func(t *testing.T, s *visitor.Site) {
			if string(s.Webhook.Secret) != webhookSecret {
				t.Errorf("Webhook.Secret = %q, want DEMO_WEBHOOK_SECRET's value", s.Webhook.Secret)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sites, err := config.ParseSites([]byte(shopSite(tt.extra)), webhookEnv(), 1, 1825)
			if err != nil {
				t.Fatalf("ParseSites: %v", err)
			}
			tt.check(t, sites[0])
		})
	}
}

// shopSite is a sites file of one valid site "shop" plus extra lines (indented
// as its fields).
func shopSite(extra string) string {
	s := "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n"
	if extra != "" {
		s += "    " + extra + "\n"
	}
	return s
}

func TestParseSitesStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "mistyped site field", yaml: shopSite("consnet: opt-in"), want: []string{"consnet"}},
		{name: "mistyped retention field", yaml: shopSite("retention_days: {sesions: 3}"), want: []string{"sesions"}},
		{name: "mistyped webhook field", yaml: shopSite(`webhook: {url: "https://crm.example/h", secret: "inline"}`), want: []string{"secret"}},
		{name: "mistyped key field", yaml: shopSite(`keys: [{id: a, role: operator, sha: "00"}]`), want: []string{"sha"}},
		{name: "mistyped top level", yaml: "site:\n  - id: shop\n", want: []string{"site"}},
		{name: "wrong type", yaml: shopSite("keep_title: sometimes"), want: []string{"sometimes"}},
		{name: "empty file", yaml: "", want: []string{"sites"}},
		{name: "no sites", yaml: "sites: []\n", want: []string{"sites"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseSites([]byte(tt.yaml), webhookEnv(), 1, 1825)
			if err == nil {
				t.Fatalf("ParseSites succeeded, want an error naming %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestParseSitesValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 33)
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // the site and the field
	}{
		{name: "uppercase id", yaml: "sites:\n  - id: Shop\n    origins: [\"https://shop.example\"]\n", want: []string{`"Shop"`, "id"}},
		{name: "33-char id", yaml: "sites:\n  - id: " + long + "\n    origins: [\"https://shop.example\"]\n", want: []string{long, "id"}},
		{name: "id with underscore", yaml: "sites:\n  - id: my_shop\n    origins: [\"https://shop.example\"]\n", want: []string{`"my_shop"`, "id"}},
		{name: "missing id", yaml: "sites:\n  - origins: [\"https://shop.example\"]\n", want: []string{"sites[0]", "id"}},
		{name: "no origins", yaml: "sites:\n  - id: shop\n", want: []string{`"shop"`, "origins"}},
		{name: "origin with a path", yaml: "sites:\n  - id: shop\n    origins: [\"https://shop.example/store\"]\n", want: []string{`"shop"`, "origins"}},
		{name: "origin with a query", yaml: "sites:\n  - id: shop\n    origins: [\"https://shop.example?x=1\"]\n", want: []string{`"shop"`, "origins"}},
		{name: "origin without scheme", yaml: "sites:\n  - id: shop\n    origins: [\"shop.example\"]\n", want: []string{`"shop"`, "origins"}},
		{name: "origin ftp", yaml: "sites:\n  - id: shop\n    origins: [\"ftp://shop.example\"]\n", want: []string{`"shop"`, "origins"}},
		{name: "unknown consent mode", yaml: shopSite("consent: opt-maybe"), want: []string{`"shop"`, "consent"}},
		{name: "consent_valid_days zero", yaml: shopSite("consent_valid_days: 0"), want: []string{`"shop"`, "consent_valid_days"}},
		{name: "unknown ip mode", yaml: shopSite("ip: anonymise"), want: []string{`"shop"`, "ip"}},
		{name: "session_timeout not a duration", yaml: shopSite("session_timeout: half an hour"), want: []string{`"shop"`, "session_timeout"}},
		{name: "session_timeout under a minute", yaml: shopSite("session_timeout: 30s"), want: []string{`"shop"`, "session_timeout"}},
		{name: "session_max not a duration", yaml: shopSite("session_max: 4"), want: []string{`"shop"`, "session_max"}},
		{name: "session_max below session_timeout", yaml: shopSite("session_timeout: 2h\n    session_max: 1h"), want: []string{`"shop"`, "session_max"}},
		{name: "invalid redact regexp", yaml: shopSite(`redact_paths: ["^/orders/(["]`), want: []string{`"shop"`, "redact_paths"}},
		{name: "retention below min", yaml: shopSite("retention_days: {sessions: 0}"), want: []string{`"shop"`, "retention_days", "sessions"}},
		{name: "retention above max", yaml: shopSite("retention_days: {audit: 1826}"), want: []string{`"shop"`, "retention_days", "audit"}},
		{name: "consents below profiles", yaml: shopSite("retention_days: {profiles: 395, consents: 200}"), want: []string{`"shop"`, "retention_days", "consents"}},
		{name: "consents below consent_valid_days", yaml: shopSite("consent_valid_days: 300\n    retention_days: {profiles: 30, consents: 250}"), want: []string{`"shop"`, "retention_days", "consents"}},
		{name: "new_visitors_per_minute zero", yaml: shopSite("rate_limit: {new_visitors_per_minute: 0}"), want: []string{`"shop"`, "rate_limit.new_visitors_per_minute"}},
		{name: "chats_per_minute negative", yaml: shopSite("rate_limit: {chats_per_minute: -1}"), want: []string{`"shop"`, "rate_limit.chats_per_minute"}},
		{name: "unknown rate_limit field", yaml: shopSite("rate_limit: {page_views_per_minute: 10}"), want: []string{"page_views_per_minute"}},
		{name: "key with bad role", yaml: shopSite(`keys: [{id: a, role: admin, sha256: "` + sumHex("k") + `"}]`), want: []string{`"shop"`, "keys[0].role"}},
		{name: "key with non-hex sha256", yaml: shopSite(`keys: [{id: a, role: operator, sha256: "` + strings.Repeat("zz", 32) + `"}]`), want: []string{`"shop"`, "keys[0].sha256"}},
		{name: "key with short sha256", yaml: shopSite(`keys: [{id: a, role: operator, sha256: "abcd"}]`), want: []string{`"shop"`, "keys[0].sha256"}},
		{name: "key with duplicate id", yaml: shopSite(`keys: [{id: a, role: operator, sha256: "` + sumHex("k1") + `"}, {id: a, role: privacy, sha256: "` + sumHex("k2") + `"}]`),
			want: []string{`"shop"`, "keys[1].id"}},
		{name: "webhook http to a public host", yaml: shopSite(`webhook: {url: "http://crm.shop.example/hook", secret_env: DEMO_WEBHOOK_SECRET}`), want: []string{`"shop"`, "webhook.url"}},
		{name: "webhook http to a look-alike of localhost", yaml: shopSite(`webhook: {url: "http://127.0.0.1.nip.example/hook", secret_env: DEMO_WEBHOOK_SECRET}`), want: []string{`"shop"`, "webhook.url"}},
		{name: "webhook relative url", yaml: shopSite(`webhook: {url: "/hook", secret_env: DEMO_WEBHOOK_SECRET}`), want: []string{`"shop"`, "webhook.url"}},
		{name: "webhook secret env missing", yaml: shopSite(`webhook: {url: "https://crm.shop.example/hook", secret_env: MISSING_SECRET}`), want: []string{`"shop"`, "webhook.secret_env", "MISSING_SECRET"}},
		{name: "webhook secret short", yaml: shopSite(`webhook: {url: "https://crm.shop.example/hook", secret_env: SHORT_SECRET}`),
			env: map[string]string{"SHORT_SECRET": "0123456789abcdef0123456789abcde"}, want: []string{`"shop"`, "webhook.secret_env", "SHORT_SECRET"}},
		{name: "webhook without secret_env", yaml: shopSite(`webhook: {url: "https://crm.shop.example/hook"}`), want: []string{`"shop"`, "webhook.secret_env"}},
		{name: "duplicate site id", yaml: shopSite("") + "  - id: shop\n    origins: [\"https://other.example\"]\n", want: []string{`"shop"`, "id"}},
		{name: "second site named", yaml: shopSite("") + "  - id: blog\n    origins: [\"https://blog.example\"]\n    ip: everything\n", want: []string{`"blog"`, "ip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"DEMO_WEBHOOK_SECRET": webhookSecret}
			for k, v := range tt.env {
				env[k] = v
			}
			sites, err := config.ParseSites([]byte(tt.yaml), mapEnv(env), 1, 1825)
			if err == nil {
				t.Fatalf("ParseSites succeeded (%d sites), want an error naming %v", len(sites), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			for _, v := range env {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error %q echoes a secret", err)
				}
			}
		})
	}
}

func TestNewAPIKey(t *testing.T) {
	t.Parallel()
	key, sum := config.NewAPIKey()
	if len(key) < 32 {
		t.Errorf("key %q is shorter than 32 characters", key)
	}
	h := sha256.Sum256([]byte(key))
	if got, want := sum, hex.EncodeToString(h[:]); got != want {
		t.Errorf("sum = %s, want sha256(key) = %s", got, want)
	}
	// The sum is what a sites file holds: it must pass the file's validation.
	yaml := shopSite(`keys: [{id: agent, role: operator, sha256: "` + sum + `"}]`)
	sites, err := config.ParseSites([]byte(yaml), mapEnv(nil), 1, 1825)
	if err != nil {
		t.Fatalf("ParseSites with NewAPIKey's sum: %v", err)
	}
	if sites[0].Keys[0].SHA256 != h {
		t.Error("the parsed key hash differs from sha256(key)")
	}
	key2, sum2 := config.NewAPIKey()
	if key == key2 || sum == sum2 {
		t.Error("two NewAPIKey calls returned the same key")
	}
}
