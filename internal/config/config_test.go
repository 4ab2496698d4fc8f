package config_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/visitor"
)

// mapEnv is a getenv over m: tests never touch the process environment.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// b64 is the standard base64 of n bytes of fill.
func b64(fill byte, n int) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{fill}, n))
}

var (
	cookieSecretA = strings.Repeat("a", 32)
	cookieSecretB = strings.Repeat("b", 40)
	dataKeyK1     = "k1:" + b64(1, 32)
	dataKeyK2     = "k2:" + b64(2, 32)
	indexKey      = b64(9, 32)
)

// prodSite is a site with what production requires: legal text and controller.
const prodSite = `sites:
  - id: shop
    origins: ["https://shop.example"]
    legal_text: "We use your chat details only to answer you."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example"}
`

// writeSites writes a sites file and returns its path.
func writeSites(tb testing.TB, yaml string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "sites.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// prodEnv is a valid production environment: VISITORD_REDIS_URL, the three
// secrets and the sites file it makes required.
func prodEnv(tb testing.TB) map[string]string {
	return map[string]string{
		"VISITORD_REDIS_URL":     "redis://127.0.0.1:6379/0",
		"VISITORD_COOKIE_SECRET": cookieSecretA,
		"VISITORD_DATA_KEY":      dataKeyK1,
		"VISITORD_INDEX_KEY":     indexKey,
		"VISITORD_SITES":         writeSites(tb, prodSite),
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(mapEnv(nil))
	if err != nil {
		t.Fatalf("Load(empty env): %v", err)
	}
	if got, want := c.Addr, ":8080"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
	if got, want := c.TrackTimeout, 150*time.Millisecond; got != want {
		t.Errorf("TrackTimeout = %v, want %v", got, want)
	}
	if got, want := c.RetentionMin, 1; got != want {
		t.Errorf("RetentionMin = %d, want %d", got, want)
	}
	if got, want := c.RetentionMax, 1825; got != want {
		t.Errorf("RetentionMax = %d, want %d", got, want)
	}
	if !c.CookieSecure {
		t.Error("CookieSecure = false, want true by default")
	}
	if c.MinReplicas != 0 || c.PProf || len(c.TrustedProxies) != 0 || c.GeoIPDB != "" || c.RedisURL != "" {
		t.Errorf("MinReplicas %d, PProf %v, TrustedProxies %v, GeoIPDB %q, RedisURL %q: want zero values",
			c.MinReplicas, c.PProf, c.TrustedProxies, c.GeoIPDB, c.RedisURL)
	}
}

func TestLoadDevMode(t *testing.T) {
	t.Parallel()
	c, err := config.Load(mapEnv(nil))
	if err != nil {
		t.Fatalf("Load(empty env): %v", err)
	}
	if !c.Dev {
		t.Error("Dev = false without VISITORD_REDIS_URL, want true")
	}
	want := []string{"VISITORD_COOKIE_SECRET", "VISITORD_DATA_KEY", "VISITORD_INDEX_KEY"}
	if diff := cmp.Diff(want, c.Generated); diff != "" {
		t.Errorf("Generated (-want +got):\n%s", diff)
	}
	if len(c.CookieSecrets) != 1 || len(c.CookieSecrets[0]) < visitor.MinSecretBytes {
		t.Errorf("CookieSecrets = %d secrets, want one generated of ≥ %d bytes", len(c.CookieSecrets), visitor.MinSecretBytes)
	}
	if len(c.DataKeys) != 1 || len(c.DataKeys[0].Key) != 32 || c.DataKeys[0].ID == "" {
		t.Errorf("DataKeys = %d keys, want one generated 32-byte key with an id", len(c.DataKeys))
	}
	if len(c.IndexKey) < visitor.MinIndexKeyBytes {
		t.Errorf("IndexKey is %d bytes, want ≥ %d", len(c.IndexKey), visitor.MinIndexKeyBytes)
	}

	// Random per start: a second start makes other secrets.
	c2, err := config.Load(mapEnv(nil))
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if bytes.Equal(c.CookieSecrets[0], c2.CookieSecrets[0]) || bytes.Equal(c.DataKeys[0].Key, c2.DataKeys[0].Key) ||
		bytes.Equal(c.IndexKey, c2.IndexKey) {
		t.Error("two dev starts generated the same secret; want random per start")
	}
}

func TestLoadDevModeUsesGivenSecrets(t *testing.T) {
	t.Parallel()
	env := prodEnv(t)
	delete(env, "VISITORD_REDIS_URL")
	c, err := config.Load(mapEnv(env))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Generated) != 0 {
		t.Errorf("Generated = %v, want none when every secret is given", c.Generated)
	}
	if got, want := string(c.CookieSecrets[0]), cookieSecretA; got != want {
		t.Errorf("CookieSecrets[0] = %q, want %q", got, want)
	}
}

func TestLoadDemoSite(t *testing.T) {
	t.Parallel()
	c, err := config.Load(mapEnv(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !c.DemoSite || len(c.Sites) != 1 {
		t.Fatalf("DemoSite %v with %d sites, want the built-in demo site alone", c.DemoSite, len(c.Sites))
	}
	site := c.Sites[0]
	if got, want := site.ID, "demo"; got != want {
		t.Errorf("demo site id = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"}, site.Origins); diff != "" {
		t.Errorf("demo origins (-want +got):\n%s", diff)
	}
	for _, role := range []visitor.Role{visitor.RoleOperator, visitor.RolePrivacy} {
		key := c.DevKeys[role]
		if key == "" {
			t.Errorf("DevKeys[%s] is empty", role)
			continue
		}
		sum := sha256.Sum256([]byte(key))
		i := slices.IndexFunc(site.Keys, func(k visitor.APIKey) bool { return k.Role == role })
		if i < 0 {
			t.Errorf("demo site has no %s key", role)
			continue
		}
		if site.Keys[i].SHA256 != sum {
			t.Errorf("demo site's %s key hash does not match the printed dev key", role)
		}
	}
	if c.DevKeys[visitor.RoleOperator] == c.DevKeys[visitor.RolePrivacy] {
		t.Error("operator and privacy dev keys are equal")
	}
}

func TestLoadProduction(t *testing.T) {
	t.Parallel()
	env := prodEnv(t)
	env["VISITORD_COOKIE_SECRET"] = cookieSecretA + "," + cookieSecretB
	env["VISITORD_DATA_KEY"] = dataKeyK1 + ", " + dataKeyK2
	env["VISITORD_ADDR"] = "127.0.0.1:9090"
	env["VISITORD_TRACK_TIMEOUT"] = "300ms"
	env["VISITORD_COOKIE_SECURE"] = "false"
	env["VISITORD_RETENTION_MIN_DAYS"] = "7"
	env["VISITORD_RETENTION_MAX_DAYS"] = "1200"
	env["VISITORD_REDIS_MIN_REPLICAS"] = "1"
	env["VISITORD_PPROF"] = "true"
	env["VISITORD_GEOIP_DB"] = "/data/city.mmdb"
	env["VISITORD_TRUSTED_PROXIES"] = "10.0.0.0/8, 192.168.1.7,fd00::/8,10.1.2.3/16"
	c, err := config.Load(mapEnv(env))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Dev || len(c.Generated) != 0 {
		t.Errorf("Dev %v, Generated %v: want production with nothing generated", c.Dev, c.Generated)
	}
	if diff := cmp.Diff([][]byte{[]byte(cookieSecretA), []byte(cookieSecretB)}, c.CookieSecrets); diff != "" {
		t.Errorf("CookieSecrets, in order (-want +got):\n%s", diff)
	}
	wantKeys := []config.DataKey{{ID: "k1", Key: bytes.Repeat([]byte{1}, 32)}, {ID: "k2", Key: bytes.Repeat([]byte{2}, 32)}}
	if diff := cmp.Diff(wantKeys, c.DataKeys); diff != "" {
		t.Errorf("DataKeys, in order (-want +got):\n%s", diff)
	}
	if got, want := c.IndexKey, bytes.Repeat([]byte{9}, 32); !bytes.Equal(got, want) {
		t.Errorf("IndexKey = %x, want %x", got, want)
	}
	wantProxies := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.1.0.0/16"),
	}
	if diff := cmp.Diff(wantProxies, c.TrustedProxies, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("TrustedProxies (-want +got):\n%s", diff)
	}
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"Addr", c.Addr, "127.0.0.1:9090"},
		{"RedisURL", c.RedisURL, "redis://127.0.0.1:6379/0"},
		{"TrackTimeout", c.TrackTimeout, 300 * time.Millisecond},
		{"CookieSecure", c.CookieSecure, false},
		{"RetentionMin", c.RetentionMin, 7},
		{"RetentionMax", c.RetentionMax, 1200},
		{"MinReplicas", c.MinReplicas, 1},
		{"PProf", c.PProf, true},
		{"GeoIPDB", c.GeoIPDB, "/data/city.mmdb"},
	} {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  map[string]string // applied over prodEnv; "" deletes
		want []string          // substrings of the error: the variable at fault
	}{
		{name: "cookie secret missing", set: map[string]string{"VISITORD_COOKIE_SECRET": ""}, want: []string{"VISITORD_COOKIE_SECRET"}},
		{name: "cookie secret short", set: map[string]string{"VISITORD_COOKIE_SECRET": "0123456789abcdef0123456789abcde"}, want: []string{"VISITORD_COOKIE_SECRET"}},
		{name: "second cookie secret short", set: map[string]string{"VISITORD_COOKIE_SECRET": cookieSecretA + ",shortsecret"}, want: []string{"VISITORD_COOKIE_SECRET"}},
		{name: "data key missing", set: map[string]string{"VISITORD_DATA_KEY": ""}, want: []string{"VISITORD_DATA_KEY"}},
		{name: "data key without kid", set: map[string]string{"VISITORD_DATA_KEY": b64(1, 32)}, want: []string{"VISITORD_DATA_KEY"}},
		{name: "data key empty kid", set: map[string]string{"VISITORD_DATA_KEY": ":" + b64(1, 32)}, want: []string{"VISITORD_DATA_KEY"}},
		{name: "data key not base64", set: map[string]string{"VISITORD_DATA_KEY": "k1:not*base64*at*all*!"}, want: []string{"VISITORD_DATA_KEY"}},
		{name: "data key 16 bytes", set: map[string]string{"VISITORD_DATA_KEY": "k1:" + b64(1, 16)}, want: []string{"VISITORD_DATA_KEY"}},
		{name: "data key 33 bytes", set: map[string]string{"VISITORD_DATA_KEY": "k1:" + b64(1, 33)}, want: []string{"VISITORD_DATA_KEY"}},
		{name: "data key duplicate kid", set: map[string]string{"VISITORD_DATA_KEY": dataKeyK1 + ",k1:" + b64(2, 32)}, want: []string{"VISITORD_DATA_KEY", "k1"}},
		{name: "index key missing", set: map[string]string{"VISITORD_INDEX_KEY": ""}, want: []string{"VISITORD_INDEX_KEY"}},
		{name: "index key short", set: map[string]string{"VISITORD_INDEX_KEY": b64(9, 31)}, want: []string{"VISITORD_INDEX_KEY"}},
		{name: "index key not base64", set: map[string]string{"VISITORD_INDEX_KEY": "%%%%not-base64%%%%"}, want: []string{"VISITORD_INDEX_KEY"}},
		{name: "all secrets missing", set: map[string]string{"VISITORD_COOKIE_SECRET": "", "VISITORD_DATA_KEY": "", "VISITORD_INDEX_KEY": ""},
			want: []string{"VISITORD_COOKIE_SECRET", "VISITORD_DATA_KEY", "VISITORD_INDEX_KEY"}},
		{name: "track timeout not a duration", set: map[string]string{"VISITORD_TRACK_TIMEOUT": "fast"}, want: []string{"VISITORD_TRACK_TIMEOUT"}},
		{name: "track timeout negative", set: map[string]string{"VISITORD_TRACK_TIMEOUT": "-1s"}, want: []string{"VISITORD_TRACK_TIMEOUT"}},
		{name: "track timeout zero", set: map[string]string{"VISITORD_TRACK_TIMEOUT": "0s"}, want: []string{"VISITORD_TRACK_TIMEOUT"}},
		{name: "cookie secure not a bool", set: map[string]string{"VISITORD_COOKIE_SECURE": "maybe"}, want: []string{"VISITORD_COOKIE_SECURE"}},
		{name: "pprof not a bool", set: map[string]string{"VISITORD_PPROF": "yes please"}, want: []string{"VISITORD_PPROF"}},
		{name: "trusted proxy garbage", set: map[string]string{"VISITORD_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"}, want: []string{"VISITORD_TRUSTED_PROXIES"}},
		{name: "trusted proxy bad prefix length", set: map[string]string{"VISITORD_TRUSTED_PROXIES": "10.0.0.0/33"}, want: []string{"VISITORD_TRUSTED_PROXIES"}},
		{name: "retention min not a number", set: map[string]string{"VISITORD_RETENTION_MIN_DAYS": "one"}, want: []string{"VISITORD_RETENTION_MIN_DAYS"}},
		{name: "retention min zero", set: map[string]string{"VISITORD_RETENTION_MIN_DAYS": "0"}, want: []string{"VISITORD_RETENTION_MIN_DAYS"}},
		{name: "retention min above max", set: map[string]string{"VISITORD_RETENTION_MIN_DAYS": "30", "VISITORD_RETENTION_MAX_DAYS": "10"},
			want: []string{"VISITORD_RETENTION_MIN_DAYS", "VISITORD_RETENTION_MAX_DAYS"}},
		{name: "min replicas negative", set: map[string]string{"VISITORD_REDIS_MIN_REPLICAS": "-1"}, want: []string{"VISITORD_REDIS_MIN_REPLICAS"}},
		{name: "sites file missing", set: map[string]string{"VISITORD_SITES": filepath.Join(t.TempDir(), "missing.yaml")}, want: []string{"VISITORD_SITES"}},
		{name: "sites file is a directory", set: map[string]string{"VISITORD_SITES": t.TempDir()}, want: []string{"VISITORD_SITES"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := prodEnv(t)
			for k, v := range tt.set {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			c, err := config.Load(mapEnv(env))
			if err == nil {
				t.Fatalf("Load succeeded (%d sites), want an error naming %v", len(c.Sites), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			// A secret must never be echoed back: startup errors reach stderr and logs.
			for _, name := range []string{"VISITORD_COOKIE_SECRET", "VISITORD_DATA_KEY", "VISITORD_INDEX_KEY"} {
				v := env[name]
				if _, b, ok := strings.Cut(v, ":"); ok && name == "VISITORD_DATA_KEY" {
					v = b
				}
				for s := range strings.SplitSeq(v, ",") {
					if len(s) >= 8 && strings.Contains(err.Error(), s) {
						t.Errorf("error %q echoes the secret of %s", err, name)
					}
				}
			}
		})
	}
}

// A short secret is an error in development too: a secret someone chose is
// never silently replaced.
func TestLoadDevModeRejectsShortSecret(t *testing.T) {
	t.Parallel()
	_, err := config.Load(mapEnv(map[string]string{"VISITORD_COOKIE_SECRET": "short"}))
	if err == nil || !strings.Contains(err.Error(), "VISITORD_COOKIE_SECRET") {
		t.Fatalf("Load = %v, want an error naming VISITORD_COOKIE_SECRET", err)
	}
}

func TestLoadSitesFile(t *testing.T) {
	t.Parallel()
	env := prodEnv(t)
	path := env["VISITORD_SITES"]
	c, err := config.Load(mapEnv(env))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.DemoSite || c.DevKeys != nil {
		t.Errorf("DemoSite %v, DevKeys %v: want neither with a sites file", c.DemoSite, c.DevKeys)
	}
	if len(c.Sites) != 1 || c.Sites[0].ID != "shop" {
		t.Fatalf("Sites = %v, want shop alone", c.Sites)
	}
	if got, want := c.SitesPath, path; got != want {
		t.Errorf("SitesPath = %q, want %q", got, want)
	}

	// The retention bounds of the environment reach the sites file: the default
	// consents retention (1095 days) is above a maximum of 1000.
	env["VISITORD_RETENTION_MAX_DAYS"] = "1000"
	_, err = config.Load(mapEnv(env))
	if err == nil {
		t.Fatal("Load with VISITORD_RETENTION_MAX_DAYS=1000 and a 1095-day default succeeded, want an error")
	}
	for _, w := range []string{"VISITORD_SITES", `"shop"`, "retention_days"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// With VISITORD_REDIS_URL set, a start never falls back to the built-in demo
// site, and every site declares its legal text and controller (issue 18).
func TestLoadProductionRequiresSites(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		sites string // "" leaves VISITORD_SITES unset
		want  []string
	}{
		{name: "no sites file", want: []string{"VISITORD_SITES", "VISITORD_REDIS_URL"}},
		{name: "no legal text or controller", sites: "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n",
			want: []string{"VISITORD_SITES", `site "shop"`, "legal_text", "controller.name", "controller.contact"}},
		{name: "controller without contact", sites: "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n    legal_text: \"Text.\"\n    controller: {name: \"Shop Ltd\"}\n",
			want: []string{`site "shop"`, "controller.contact"}},
		{name: "second site without legal text", sites: prodSite + "  - id: blog\n    origins: [\"https://blog.example\"]\n    controller: {name: \"Blog\", contact: \"b@blog.example\"}\n",
			want: []string{`site "blog"`, "legal_text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := prodEnv(t)
			delete(env, "VISITORD_SITES")
			if tt.sites != "" {
				env["VISITORD_SITES"] = writeSites(t, tt.sites)
			}
			c, err := config.Load(mapEnv(env))
			if err == nil {
				t.Fatalf("Load succeeded (demo %v, %d sites), want an error naming %v", c.DemoSite, len(c.Sites), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	// Without VISITORD_REDIS_URL (development) the same bare site loads.
	bare := writeSites(t, "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n")
	if _, err := config.Load(mapEnv(map[string]string{"VISITORD_SITES": bare})); err != nil {
		t.Errorf("development Load of a site without legal text: %v", err)
	}
}

// VISITORD_DEMO_ORIGINS adds origins to the demo site, beside every loopback
// form on the real port; it is an error beside a sites file.
func TestLoadDemoOrigins(t *testing.T) {
	t.Parallel()
	c, err := config.Load(mapEnv(map[string]string{"VISITORD_ADDR": "127.0.0.1:0",
		"VISITORD_DEMO_ORIGINS": "http://devbox.lan:8080, http://localhost:18080/"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Listening("127.0.0.1:41234"); err != nil {
		t.Fatal(err)
	}
	want := []string{"http://localhost:41234", "http://127.0.0.1:41234", "http://[::1]:41234", "http://devbox.lan:8080", "http://localhost:18080"}
	if diff := cmp.Diff(want, c.Sites[0].Origins); diff != "" {
		t.Errorf("demo origins (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{name: "not an origin", env: map[string]string{"VISITORD_DEMO_ORIGINS": "devbox.lan"}},
		{name: "beside a sites file", env: map[string]string{"VISITORD_DEMO_ORIGINS": "http://devbox.lan", "VISITORD_SITES": writeSites(t, prodSite)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := config.Load(mapEnv(tt.env)); err == nil || !strings.Contains(err.Error(), "VISITORD_DEMO_ORIGINS") {
				t.Errorf("Load = %v, want an error naming VISITORD_DEMO_ORIGINS", err)
			}
		})
	}
}

// VISITORD_METRICS_ADDR defaults to :9090 and is read as given.
func TestLoadMetricsAddr(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ set, want string }{{"", ":9090"}, {"127.0.0.1:0", "127.0.0.1:0"}} {
		c, err := config.Load(mapEnv(map[string]string{"VISITORD_METRICS_ADDR": tt.set}))
		if err != nil {
			t.Fatal(err)
		}
		if c.MetricsAddr != tt.want {
			t.Errorf("VISITORD_METRICS_ADDR %q: MetricsAddr = %q, want %q", tt.set, c.MetricsAddr, tt.want)
		}
	}
}
