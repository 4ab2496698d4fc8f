package visitor_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// An identity issued after a retention change lives as long as the profiles
// window in force (the override, not the sites file's), at most 13 months.
func TestIdentityLifetimeFollowsRetentionInForce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		profiles int // 0: no override
		want     time.Duration
	}{
		{name: "sites file window", want: 395 * 24 * time.Hour},
		{name: "shortened by PUT retention", profiles: 30, want: 30 * 24 * time.Hour},
		{name: "longer override capped at 13 months", profiles: 800, want: visitor.MaxCookieLifetime},
	}
	d := newDomain(t, nil)
	for _, tt := range tests {
		if tt.profiles > 0 {
			r := d.site.Retention
			r.Profiles, r.Consents = tt.profiles, max(tt.profiles, r.Consents)
			if _, err := d.svc.SetRetention(d.ctx, d.privacy, r); err != nil {
				t.Fatalf("%s: SetRetention: %v", tt.name, err)
			}
		}
		now := d.clock.Now()
		// Every way an identity is issued: a page view, a consent grant, an
		// on-chat chat start share issueID; the page view and the grant are
		// checked here.
		res, err := d.svc.Track(d.ctx, visitor.Hit{Site: d.site, Type: visitor.HitPageview, URL: domainOrigin + "/",
			UserAgent: domainUA, IP: netip.MustParseAddr("192.0.2.1")})
		if err != nil || !res.Issued {
			t.Fatalf("%s: Track = %+v, %v; want an issued identity", tt.name, res, err)
		}
		if got := res.TokenExpires.Sub(now); got != tt.want {
			t.Errorf("%s: page view identity lives %v, want %v", tt.name, got, tt.want)
		}
		cr, err := d.svc.SetConsent(d.ctx, visitor.ConsentRequest{Site: d.site, Analytics: true, PolicyVersion: d.site.PolicyVersion,
			Method: visitor.MethodAPI, UserAgent: domainUA})
		if err != nil {
			t.Fatalf("%s: Consent: %v", tt.name, err)
		}
		if got := cr.TokenExpires.Sub(now); got != tt.want {
			t.Errorf("%s: consent identity lives %v, want %v", tt.name, got, tt.want)
		}
	}
}
