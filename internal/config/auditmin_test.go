package config_test

import (
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/config"
)

// VISITORD_AUDIT_MIN_DAYS: 365 by default, a whole number ≥ 1, never above
// VISITORD_RETENTION_MAX_DAYS (no audit window could be set then); an error
// names the variable.
func TestLoadAuditMinDays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		set     map[string]string
		want    int
		wantErr []string
	}{
		{name: "default", want: 365},
		{name: "set", set: map[string]string{"VISITORD_AUDIT_MIN_DAYS": "730"}, want: 730},
		{name: "one day", set: map[string]string{"VISITORD_AUDIT_MIN_DAYS": "1"}, want: 1},
		{name: "at the maximum", set: map[string]string{"VISITORD_AUDIT_MIN_DAYS": "1825"}, want: 1825},
		{name: "zero", set: map[string]string{"VISITORD_AUDIT_MIN_DAYS": "0"}, wantErr: []string{"VISITORD_AUDIT_MIN_DAYS"}},
		{name: "not a number", set: map[string]string{"VISITORD_AUDIT_MIN_DAYS": "a year"}, wantErr: []string{"VISITORD_AUDIT_MIN_DAYS"}},
		{name: "above the maximum", set: map[string]string{"VISITORD_AUDIT_MIN_DAYS": "2000"},
			wantErr: []string{"VISITORD_AUDIT_MIN_DAYS", "VISITORD_RETENTION_MAX_DAYS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := prodEnv(t)
			for k, v := range tt.set {
				env[k] = v
			}
			c, err := config.Load(mapEnv(env))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Load = nil error, want one naming %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.AuditMinDays != tt.want {
				t.Errorf("AuditMinDays = %d, want %d", c.AuditMinDays, tt.want)
			}
		})
	}
}
