// Package config loads visitord's configuration from the environment and the
// sites file. Defaults live here, once; every error names the variable or the
// sites-file field at fault.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// Defaults of the environment variables.
const (
	DefaultAddr             = ":8080"
	DefaultMetricsAddr      = ":9090"
	DefaultTrackTimeout     = 150 * time.Millisecond
	DefaultRetentionMinDays = 1
	DefaultRetentionMaxDays = 1825
	DefaultAuditMinDays     = visitor.DefaultAuditMinDays
)

// DataKey is one key for contact details at rest.
type DataKey = visitor.DataKey

// Config is visitord's whole configuration.
type Config struct {
	Addr           string
	MetricsAddr    string
	RedisURL       string
	SitesPath      string
	GeoIPDB        string
	TrustedProxies []netip.Prefix
	CookieSecrets  [][]byte
	DataKeys       []DataKey
	IndexKey       []byte
	CookieSecure   bool
	TrackTimeout   time.Duration
	RetentionMin   int
	RetentionMax   int
	MinReplicas    int
	PProf          bool
	Sites          []*visitor.Site

	// Dev is true without VISITORD_REDIS_URL: an embedded in-memory Redis.
	Dev bool
	// DemoSite is true when no sites file is given and the built-in demo site is in use.
	DemoSite bool
	// DemoOrigins are VISITORD_DEMO_ORIGINS: the demo site's origins beside the
	// loopback ones (a LAN name, a mapped container port).
	DemoOrigins []string
	// DevKeys are the demo site's API keys in clear (role → key), printed at start.
	DevKeys map[visitor.Role]string
	// Generated lists the secrets made up for this start (development only).
	Generated []string

	// AuditMinDays is the shortest audit window a privacy key may set
	// (VISITORD_AUDIT_MIN_DAYS).
	AuditMinDays int
}

// Load reads the configuration from getenv (os.Getenv in production, a map in
// tests) and the sites file it names, and validates it.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		Addr:         or(getenv("VISITORD_ADDR"), DefaultAddr),
		MetricsAddr:  or(getenv("VISITORD_METRICS_ADDR"), DefaultMetricsAddr),
		RedisURL:     strings.TrimSpace(getenv("VISITORD_REDIS_URL")),
		SitesPath:    getenv("VISITORD_SITES"),
		GeoIPDB:      getenv("VISITORD_GEOIP_DB"),
		CookieSecure: true,
		TrackTimeout: DefaultTrackTimeout,
		RetentionMin: DefaultRetentionMinDays,
		RetentionMax: DefaultRetentionMaxDays,
		AuditMinDays: DefaultAuditMinDays,
	}
	c.Dev = c.RedisURL == ""
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(parseBool(getenv, "VISITORD_COOKIE_SECURE", &c.CookieSecure))
	add(parseBool(getenv, "VISITORD_PPROF", &c.PProf))
	add(parseDuration(getenv, "VISITORD_TRACK_TIMEOUT", &c.TrackTimeout))
	add(parseInt(getenv, "VISITORD_RETENTION_MIN_DAYS", &c.RetentionMin, 1))
	add(parseInt(getenv, "VISITORD_RETENTION_MAX_DAYS", &c.RetentionMax, 1))
	add(parseInt(getenv, "VISITORD_REDIS_MIN_REPLICAS", &c.MinReplicas, 0))
	add(parseInt(getenv, "VISITORD_AUDIT_MIN_DAYS", &c.AuditMinDays, 1))
	if c.AuditMinDays > c.RetentionMax {
		add(fmt.Errorf("VISITORD_AUDIT_MIN_DAYS (%d) is above VISITORD_RETENTION_MAX_DAYS (%d)", c.AuditMinDays, c.RetentionMax))
	}
	if c.RetentionMin > c.RetentionMax {
		add(fmt.Errorf("VISITORD_RETENTION_MIN_DAYS (%d) is above VISITORD_RETENTION_MAX_DAYS (%d)", c.RetentionMin, c.RetentionMax))
	}
	add(c.loadProxies(getenv("VISITORD_TRUSTED_PROXIES")))
	add(c.loadSecrets(getenv))
	add(c.loadDemoOrigins(getenv("VISITORD_DEMO_ORIGINS")))
	if c.SitesPath == "" && !c.Dev {
		add(errors.New("VISITORD_SITES is required when VISITORD_REDIS_URL is set: the built-in demo site is for development only"))
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	if c.SitesPath != "" {
		sites, err := LoadSites(c.SitesPath, getenv, c.RetentionMin, c.RetentionMax)
		if err != nil {
			return Config{}, err
		}
		if !c.Dev {
			if err := requireProduction(sites); err != nil {
				return Config{}, fmt.Errorf("VISITORD_SITES %s: %w", c.SitesPath, err)
			}
		}
		c.Sites = sites
	} else {
		site, keys, err := demoSite(c.Addr, c.DemoOrigins)
		if err != nil {
			return Config{}, err
		}
		c.Sites, c.DemoSite, c.DevKeys = []*visitor.Site{site}, true, keys
	}
	return c, nil
}

// requireProduction checks what a production site cannot do without: the
// legal text the widget shows and the controller the processing record names.
func requireProduction(sites []*visitor.Site) error {
	var errs []error
	for _, s := range sites {
		var missing []string
		if strings.TrimSpace(s.LegalText) == "" {
			missing = append(missing, "legal_text")
		}
		if strings.TrimSpace(s.Controller.Name) == "" {
			missing = append(missing, "controller.name")
		}
		if strings.TrimSpace(s.Controller.Contact) == "" {
			missing = append(missing, "controller.contact")
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("site %q: %s required when VISITORD_REDIS_URL is set", s.ID, strings.Join(missing, ", ")))
		}
	}
	return errors.Join(errs...)
}

// loadDemoOrigins reads the built-in demo site's extra origins.
func (c *Config) loadDemoOrigins(v string) error {
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		o, err := parseOrigin(f)
		if err != nil {
			return fmt.Errorf("VISITORD_DEMO_ORIGINS: %w", err)
		}
		c.DemoOrigins = append(c.DemoOrigins, o)
	}
	if len(c.DemoOrigins) > 0 && c.SitesPath != "" {
		return errors.New("VISITORD_DEMO_ORIGINS applies to the built-in demo site only: with VISITORD_SITES, list the origins in the sites file")
	}
	return nil
}

func (c *Config) loadProxies(v string) error {
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("VISITORD_TRUSTED_PROXIES: %q is not a CIDR", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	return nil
}

// loadSecrets reads the three secrets. With VISITORD_REDIS_URL set each is
// required; without it a missing one is made up for this start only.
func (c *Config) loadSecrets(getenv func(string) string) error {
	var errs []error
	need := func(name string) bool {
		if c.Dev {
			c.Generated = append(c.Generated, name)
			return false
		}
		errs = append(errs, fmt.Errorf("%s is required when VISITORD_REDIS_URL is set", name))
		return false
	}
	if v := getenv("VISITORD_COOKIE_SECRET"); v != "" {
		for i, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if len(s) < visitor.MinSecretBytes {
				errs = append(errs, fmt.Errorf("VISITORD_COOKIE_SECRET: secret %d is %d bytes, at least %d needed", i+1, len(s), visitor.MinSecretBytes))
			}
			c.CookieSecrets = append(c.CookieSecrets, []byte(s))
		}
	} else if !need("VISITORD_COOKIE_SECRET") {
		c.CookieSecrets = [][]byte{randomBytes(32)}
	}
	if v := getenv("VISITORD_DATA_KEY"); v != "" {
		seen := map[string]bool{}
		for i, f := range strings.Split(v, ",") {
			id, b64, ok := strings.Cut(strings.TrimSpace(f), ":")
			key, err := base64.StdEncoding.DecodeString(b64)
			switch {
			case !ok || id == "":
				errs = append(errs, fmt.Errorf("VISITORD_DATA_KEY: key %d is not kid:base64", i+1))
			case err != nil || len(key) != 32:
				errs = append(errs, fmt.Errorf("VISITORD_DATA_KEY: key %q is not base64 of 32 bytes", id))
			case seen[id]:
				errs = append(errs, fmt.Errorf("VISITORD_DATA_KEY: key id %q appears twice", id))
			default:
				seen[id] = true
				c.DataKeys = append(c.DataKeys, DataKey{ID: id, Key: key})
			}
		}
	} else if !need("VISITORD_DATA_KEY") {
		c.DataKeys = []DataKey{{ID: "dev", Key: randomBytes(32)}}
	}
	if v := getenv("VISITORD_INDEX_KEY"); v != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		switch {
		case err != nil:
			errs = append(errs, errors.New("VISITORD_INDEX_KEY is not base64"))
		case len(key) < visitor.MinIndexKeyBytes:
			errs = append(errs, fmt.Errorf("VISITORD_INDEX_KEY is %d bytes, at least %d needed", len(key), visitor.MinIndexKeyBytes))
		default:
			c.IndexKey = key
		}
	} else if !need("VISITORD_INDEX_KEY") {
		c.IndexKey = randomBytes(32)
	}
	return errors.Join(errs...)
}

// Listening tells the configuration the address the service really listens on:
// the built-in demo site's origins follow its port (VISITORD_ADDR may say :0).
func (c *Config) Listening(addr string) error {
	if !c.DemoSite {
		return nil
	}
	site, _, err := demoSite(addr, c.DemoOrigins)
	if err != nil {
		return err
	}
	c.Sites[0].Origins = site.Origins
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	return b
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func parseBool(getenv func(string) string, name string, dst *bool) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%s: %q is not true or false", name, v)
	}
	*dst = b
	return nil
}

func parseDuration(getenv func(string) string, name string, dst *time.Duration) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s: %q is not a positive duration such as 150ms", name, v)
	}
	*dst = d
	return nil
}

func parseInt(getenv func(string) string, name string, dst *int, min int) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return fmt.Errorf("%s: %q is not a whole number ≥ %d", name, v, min)
	}
	*dst = n
	return nil
}
