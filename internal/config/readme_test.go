package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/config"
)

// The README's configuration table lists exactly the variables config.Load
// reads, with their defaults, and states the sites file's bounds (issue 18).
func TestREADMEConfiguration(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	read := map[string]bool{}
	if _, err := config.Load(func(k string) string { read[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // variable → its default cell
	name := regexp.MustCompile("`(VISITORD_[A-Z_]+)`")
	for l := range strings.SplitSeq(readme, "\n") {
		if !strings.HasPrefix(l, "| `VISITORD_") {
			continue
		}
		cells := strings.Split(l, " | ")
		for _, m := range name.FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] = cells[len(cells)-1]
		}
	}
	for k := range read {
		if _, ok := rows[k]; !ok && strings.HasPrefix(k, "VISITORD_") {
			t.Errorf("config.Load reads %s, which the README's configuration table lacks", k)
		}
	}
	for k := range rows {
		if !read[k] {
			t.Errorf("the README's configuration table lists %s, which config.Load never reads", k)
		}
	}
	for k, def := range map[string]string{
		"VISITORD_ADDR":               "`" + config.DefaultAddr + "`",
		"VISITORD_METRICS_ADDR":       "`" + config.DefaultMetricsAddr + "`",
		"VISITORD_TRACK_TIMEOUT":      "`" + config.DefaultTrackTimeout.String() + "`",
		"VISITORD_RETENTION_MIN_DAYS": "`" + strconv.Itoa(config.DefaultRetentionMinDays) + "` / `" + strconv.Itoa(config.DefaultRetentionMaxDays) + "`",
		"VISITORD_COOKIE_SECURE":      "`true`",
		"VISITORD_PPROF":              "`false`",
		"VISITORD_REDIS_MIN_REPLICAS": "`0`",
	} {
		if !strings.HasPrefix(strings.TrimSpace(rows[k]), def) {
			t.Errorf("README default of %s is %q, want %s", k, rows[k], def)
		}
	}
	for _, bound := range []string{"`consent_valid_days` 1–395", "`session_timeout` and `session_max` at least `1m`",
		"`VISITORD_COOKIE_SECRET` at least 32 bytes", "`VISITORD_INDEX_KEY` at least 32 bytes", "secret of at least 32 bytes"} {
		if !strings.Contains(strings.Join(strings.Fields(readme), " "), bound) {
			t.Errorf("the README does not state the bound %q", bound)
		}
	}
}
