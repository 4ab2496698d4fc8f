package config

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/visitord/visitord/internal/visitor"
)

// Defaults of a site's fields in the sites file.
const (
	DefaultConsentValidDays = 180
	DefaultSessionTimeout   = 30 * time.Minute
	DefaultSessionMax       = 4 * time.Hour
	DefaultPolicyVersion    = "1"
	DefaultChatsPerMinute   = 5
	DefaultConsentPerMinute = 20
	// DefaultNewVisitorsPerMinute is sized for offices and carrier NAT, where
	// many new visitors share one IP block.
	DefaultNewVisitorsPerMinute = 600
)

// DefaultRetention is the retention of a site that names none.
var DefaultRetention = visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}

// DefaultKeepQuery keeps the campaign parameters.
var DefaultKeepQuery = []string{"utm_*"}

type sitesFile struct {
	Sites []siteYAML `yaml:"sites"`
}

type siteYAML struct {
	ID               string         `yaml:"id"`
	Origins          []string       `yaml:"origins"`
	Consent          string         `yaml:"consent"`
	ConsentValidDays *int           `yaml:"consent_valid_days"`
	IP               string         `yaml:"ip"`
	SessionTimeout   string         `yaml:"session_timeout"`
	SessionMax       string         `yaml:"session_max"`
	KeepQuery        *[]string      `yaml:"keep_query"`
	RedactPaths      []string       `yaml:"redact_paths"`
	KeepTitle        *bool          `yaml:"keep_title"`
	RetentionDays    *retentionYAML `yaml:"retention_days"`
	PolicyVersion    string         `yaml:"policy_version"`
	LegalText        string         `yaml:"legal_text"`
	Controller       controllerYAML `yaml:"controller"`
	Webhook          *webhookYAML   `yaml:"webhook"`
	RateLimit        *rateLimitYAML `yaml:"rate_limit"`
	Keys             []keyYAML      `yaml:"keys"`
}

type retentionYAML struct {
	Sessions *int `yaml:"sessions"`
	Profiles *int `yaml:"profiles"`
	Chats    *int `yaml:"chats"`
	Consents *int `yaml:"consents"`
	Audit    *int `yaml:"audit"`
}

type controllerYAML struct {
	Name      string `yaml:"name"`
	Contact   string `yaml:"contact"`
	DPO       string `yaml:"dpo"`
	Transfers string `yaml:"transfers"`
}

type webhookYAML struct {
	URL       string `yaml:"url"`
	SecretEnv string `yaml:"secret_env"`
}

type rateLimitYAML struct {
	NewVisitorsPerMinute *int `yaml:"new_visitors_per_minute"`
	ChatsPerMinute       *int `yaml:"chats_per_minute"`
	ConsentPerMinute     *int `yaml:"consent_per_minute"`
}

type keyYAML struct {
	ID     string `yaml:"id"`
	Role   string `yaml:"role"`
	SHA256 string `yaml:"sha256"`
}

// LoadSites reads and validates the sites file at path. Secrets it names by
// environment variable are read through getenv.
func LoadSites(path string, getenv func(string) string, minDays, maxDays int) ([]*visitor.Site, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("VISITORD_SITES: %w", err)
	}
	sites, err := ParseSites(b, getenv, minDays, maxDays)
	if err != nil {
		return nil, fmt.Errorf("VISITORD_SITES %s: %w", path, err)
	}
	return sites, nil
}

// ParseSites decodes a sites file strictly (an unknown field is an error) and
// validates every site; errors name the site and the field.
func ParseSites(b []byte, getenv func(string) string, minDays, maxDays int) ([]*visitor.Site, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f sitesFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: it needs a list under sites")
		}
		return nil, err
	}
	if len(f.Sites) == 0 {
		return nil, errors.New("sites: at least one site is needed")
	}
	var sites []*visitor.Site
	var errs []error
	seen := map[string]bool{}
	for i, y := range f.Sites {
		site, err := y.site(getenv, minDays, maxDays)
		if err != nil {
			name := fmt.Sprintf("sites[%d]", i)
			if y.ID != "" {
				name = fmt.Sprintf("site %q", y.ID)
			}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if seen[site.ID] {
			errs = append(errs, fmt.Errorf("site %q: id: defined twice", site.ID))
		}
		seen[site.ID] = true
		sites = append(sites, site)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sites, nil
}

var (
	sha256Hex    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	envName      = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
)

// site builds the visitor.Site y describes: the defaults, then each group of
// fields in file order, so the first error is the one an operator meets first.
func (y siteYAML) site(getenv func(string) string, minDays, maxDays int) (*visitor.Site, error) {
	s := y.defaults()
	for _, apply := range []func(*visitor.Site) error{
		y.applyIdentity,
		y.applyConsent,
		y.applyIP,
		y.applySessions,
		y.applyFilters,
		func(s *visitor.Site) error { return y.applyRetention(s, minDays, maxDays) },
		y.applyPolicyVersion,
		func(s *visitor.Site) error { return y.applyWebhook(s, getenv) },
		y.applyRateLimit,
		y.applyKeys,
	} {
		if err := apply(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// defaults is the site y describes before any optional field is applied.
func (y siteYAML) defaults() *visitor.Site {
	return &visitor.Site{
		ID: y.ID, Consent: visitor.ConsentMode(or(y.Consent, string(visitor.ConsentOptIn))),
		ConsentValidDays: DefaultConsentValidDays, IP: visitor.IPMode(or(y.IP, string(visitor.IPTruncate))),
		SessionTimeout: DefaultSessionTimeout, SessionMax: DefaultSessionMax, KeepQuery: DefaultKeepQuery,
		KeepTitle: true, Retention: DefaultRetention, PolicyVersion: or(y.PolicyVersion, DefaultPolicyVersion),
		LegalText: y.LegalText,
		Controller: visitor.Controller{Name: y.Controller.Name, Contact: y.Controller.Contact,
			DPO: y.Controller.DPO, Transfers: or(y.Controller.Transfers, "none")},
		RateLimit: visitor.RateLimit{NewVisitorsPerMinute: DefaultNewVisitorsPerMinute,
			ChatsPerMinute: DefaultChatsPerMinute, ConsentPerMinute: DefaultConsentPerMinute},
	}
}

// applyIdentity checks the id and normalises the origins.
func (y siteYAML) applyIdentity(s *visitor.Site) error {
	if !visitor.ValidSiteID(s.ID) {
		return fmt.Errorf("id: %q must match [a-z0-9-]{1,32}", y.ID)
	}
	if len(y.Origins) == 0 {
		return errors.New("origins: at least one origin is needed")
	}
	for _, o := range y.Origins {
		norm, err := parseOrigin(o)
		if err != nil {
			return fmt.Errorf("origins: %w", err)
		}
		s.Origins = append(s.Origins, norm)
	}
	return nil
}

// applyConsent checks the consent mode and applies consent_valid_days.
func (y siteYAML) applyConsent(s *visitor.Site) error {
	switch s.Consent {
	case visitor.ConsentOptIn, visitor.ConsentOnChat, visitor.ConsentOptOut:
	default:
		return fmt.Errorf("consent: %q must be opt-in, on-chat or opt-out", y.Consent)
	}
	if y.ConsentValidDays != nil {
		if *y.ConsentValidDays < 1 || *y.ConsentValidDays > 395 {
			return fmt.Errorf("consent_valid_days: %d must be 1..395", *y.ConsentValidDays)
		}
		s.ConsentValidDays = *y.ConsentValidDays
	}
	return nil
}

// applyIP checks the IP mode.
func (y siteYAML) applyIP(s *visitor.Site) error {
	switch s.IP {
	case visitor.IPDrop, visitor.IPTruncate, visitor.IPFull:
		return nil
	default:
		return fmt.Errorf("ip: %q must be drop, truncate or full", y.IP)
	}
}

// applySessions applies session_timeout and session_max.
func (y siteYAML) applySessions(s *visitor.Site) error {
	if err := duration("session_timeout", y.SessionTimeout, &s.SessionTimeout); err != nil {
		return err
	}
	if err := duration("session_max", y.SessionMax, &s.SessionMax); err != nil {
		return err
	}
	if s.SessionMax < s.SessionTimeout {
		return fmt.Errorf("session_max: %s is shorter than session_timeout %s", s.SessionMax, s.SessionTimeout)
	}
	return nil
}

// applyFilters applies what is kept of a page view: keep_query, redact_paths
// and keep_title.
func (y siteYAML) applyFilters(s *visitor.Site) error {
	if y.KeepQuery != nil {
		s.KeepQuery = *y.KeepQuery
	}
	for _, p := range y.RedactPaths {
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("redact_paths: %q: %w", p, err)
		}
		s.RedactPaths = append(s.RedactPaths, re)
	}
	if y.KeepTitle != nil {
		s.KeepTitle = *y.KeepTitle
	}
	return nil
}

// applyRetention overrides the retention days the file names and checks the
// result against minDays..maxDays.
func (y siteYAML) applyRetention(s *visitor.Site, minDays, maxDays int) error {
	if r := y.RetentionDays; r != nil {
		for _, f := range []struct {
			v   *int
			dst *int
		}{{r.Sessions, &s.Retention.Sessions}, {r.Profiles, &s.Retention.Profiles}, {r.Chats, &s.Retention.Chats},
			{r.Consents, &s.Retention.Consents}, {r.Audit, &s.Retention.Audit}} {
			if f.v != nil {
				*f.dst = *f.v
			}
		}
	}
	if err := s.ValidateRetention(s.Retention, minDays, maxDays); err != nil {
		return fmt.Errorf("retention_days: %w", err)
	}
	return nil
}

// applyPolicyVersion checks that the policy version is one short line without |.
func (y siteYAML) applyPolicyVersion(s *visitor.Site) error {
	if strings.ContainsAny(s.PolicyVersion, "|\n") || len(s.PolicyVersion) > 64 {
		return fmt.Errorf("policy_version: %q must be one line of at most 64 bytes without |", s.PolicyVersion)
	}
	return nil
}

// applyWebhook checks the webhook URL and reads its secret through getenv.
func (y siteYAML) applyWebhook(s *visitor.Site, getenv func(string) string) error {
	w := y.Webhook
	if w == nil {
		return nil
	}
	if err := checkWebhookURL(w.URL); err != nil {
		return fmt.Errorf("webhook.url: %w", err)
	}
	if !envName.MatchString(w.SecretEnv) {
		return fmt.Errorf("webhook.secret_env: %q must name an environment variable", w.SecretEnv)
	}
	secret := getenv(w.SecretEnv)
	if len(secret) < 32 {
		return fmt.Errorf("webhook.secret_env: %s must hold a secret of at least 32 bytes", w.SecretEnv)
	}
	s.Webhook = visitor.Webhook{URL: w.URL, Secret: []byte(secret)}
	return nil
}

// applyRateLimit overrides the per-minute limits the file names.
func (y siteYAML) applyRateLimit(s *visitor.Site) error {
	r := y.RateLimit
	if r == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
	}{
		{"new_visitors_per_minute", r.NewVisitorsPerMinute, &s.RateLimit.NewVisitorsPerMinute},
		{"chats_per_minute", r.ChatsPerMinute, &s.RateLimit.ChatsPerMinute},
		{"consent_per_minute", r.ConsentPerMinute, &s.RateLimit.ConsentPerMinute},
	} {
		if f.v == nil {
			continue
		}
		if *f.v < 1 {
			return fmt.Errorf("rate_limit.%s: %d must be at least 1", f.name, *f.v)
		}
		*f.dst = *f.v
	}
	return nil
}

// applyKeys checks and decodes the site's API keys.
func (y siteYAML) applyKeys(s *visitor.Site) error {
	ids := map[string]bool{}
	for i, k := range y.Keys {
		if !keyIDPattern.MatchString(k.ID) {
			return fmt.Errorf("keys[%d].id: %q must match [A-Za-z0-9._-]{1,64}", i, k.ID)
		}
		if ids[k.ID] {
			return fmt.Errorf("keys[%d].id: %q appears twice", i, k.ID)
		}
		ids[k.ID] = true
		role := visitor.Role(k.Role)
		if role != visitor.RoleOperator && role != visitor.RolePrivacy {
			return fmt.Errorf("keys[%d].role: %q must be operator or privacy", i, k.Role)
		}
		sum := strings.ToLower(k.SHA256)
		if !sha256Hex.MatchString(sum) {
			return fmt.Errorf("keys[%d].sha256: must be 64 hex digits (visitord hash-key prints one)", i)
		}
		var key visitor.APIKey
		key.ID, key.Role = k.ID, role
		_, _ = hex.Decode(key.SHA256[:], []byte(sum))
		s.Keys = append(s.Keys, key)
	}
	return nil
}

func duration(field, v string, dst *time.Duration) error {
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute {
		return fmt.Errorf("%s: %q must be a duration of at least 1m, such as 30m", field, v)
	}
	*dst = d
	return nil
}

// parseOrigin checks that o is a bare scheme://host[:port] and returns it in the
// form browsers send in Origin.
func parseOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q must be scheme://host[:port], such as https://shop.example", o)
	}
	return visitor.Origin(u), nil
}

// checkWebhookURL allows https, and http only to a loopback host (development).
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("%q must be https (http only for a loopback host)", raw)
}

// NewAPIKey returns a new random API key and the hex SHA-256 the sites file holds.
func NewAPIKey() (key, sum string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	key = "vk_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(key))
	return key, hex.EncodeToString(h[:])
}

// demoSite is the built-in site of a start without a sites file: opt-out, so the
// printed curl records a page view, with random dev keys for both roles. Its
// origins are every loopback form on the listening port, and extra.
func demoSite(addr string, extra []string) (*visitor.Site, map[visitor.Role]string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("VISITORD_ADDR: %q is not host:port", addr)
	}
	keys := map[visitor.Role]string{}
	y := siteYAML{
		ID: "demo", Consent: string(visitor.ConsentOptOut),
		Origins:       append([]string{"http://localhost:" + port, "http://127.0.0.1:" + port, "http://[::1]:" + port}, extra...),
		RedactPaths:   []string{"^/reset/", "^/orders/[0-9]+"},
		PolicyVersion: "2026-11", LegalText: "This demo shop records the pages you visit to help our chat team answer you.",
		Controller: controllerYAML{Name: "Demo Shop", Contact: "privacy@demo.example", DPO: "dpo@demo.example", Transfers: "none"},
	}
	for _, r := range []visitor.Role{visitor.RoleOperator, visitor.RolePrivacy} {
		key, sum := NewAPIKey()
		keys[r] = key
		y.Keys = append(y.Keys, keyYAML{ID: "dev-" + string(r), Role: string(r), SHA256: sum})
	}
	site, err := y.site(func(string) string { return "" }, 1, DefaultRetentionMaxDays)
	return site, keys, err
}
