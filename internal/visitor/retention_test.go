package visitor_test

import (
	"context"
	"errors"
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

// A retention change is checked against the bounds, stored, applied at once on
// this pod and audited with the old and new windows; a shorter window starts a
// re-expiry job that deletes what is older than it, a longer one none.
func TestSetRetention(t *testing.T) {
	t.Parallel()
	base := domainSite().Retention // sessions 90, profiles 395, chats 90, consents 1095, audit 365
	with := func(f func(*visitor.Retention)) visitor.Retention {
		r := base
		f(&r)
		return r
	}
	for _, tt := range []struct {
		name string
		site func(*visitor.Site)
		opts []visitor.Option
		r    visitor.Retention
		code string // "" when accepted
		chat bool   // the chat started before the change is still stored after the job ran two days later
	}{
		{name: "longer windows", r: with(func(r *visitor.Retention) { r.Sessions, r.Chats = 120, 120 }), chat: true},
		{name: "the same windows", r: base, chat: true},
		{name: "a shorter chats window", r: with(func(r *visitor.Retention) { r.Chats = 1 })},
		{name: "a shorter sessions window", r: with(func(r *visitor.Retention) { r.Sessions = 1 }), chat: true},
		{name: "a window below the minimum", r: with(func(r *visitor.Retention) { r.Sessions = 0 }), code: visitor.ERetentionBounds, chat: true},
		{name: "a window above the maximum", r: with(func(r *visitor.Retention) { r.Consents = 1826 }), code: visitor.ERetentionBounds, chat: true},
		{name: "bounds set by option", opts: []visitor.Option{visitor.WithRetentionBounds(7, 400)}, r: with(func(r *visitor.Retention) { r.Consents = 401 }),
			code: visitor.ERetentionBounds, chat: true},
		{name: "consents below profiles", r: with(func(r *visitor.Retention) { r.Profiles, r.Consents = 400, 399 }), code: visitor.ERetentionBounds, chat: true},
		{name: "audit below the floor", r: with(func(r *visitor.Retention) { r.Audit = 364 }), code: visitor.ERetentionBounds, chat: true},
		{name: "audit floor set by option", opts: []visitor.Option{visitor.WithAuditMinDays(30)}, r: with(func(r *visitor.Retention) { r.Audit = 30 }),
			chat: true},
		{name: "a configured audit window below the floor may be kept", site: func(s *visitor.Site) { s.Retention.Audit = 30 },
			r: with(func(r *visitor.Retention) { r.Audit, r.Sessions = 30, 100 }), chat: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := domainSite()
			if tt.site != nil {
				tt.site(site)
			}
			st := newStack(t, []*visitor.Site{site}, domainDevices{}, domainLocator{}, tt.opts...)
			ctx := context.Background()
			dpo := visitor.Actor{Site: site, KeyID: "dpo", Role: visitor.RolePrivacy}
			old := site.Retention
			chat, err := st.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Contact: visitor.Contact{Name: "Ada"}, UserAgent: domainUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}

			got, err := st.svc.SetRetention(ctx, dpo, tt.r)
			if code := visitor.ErrorCode(err); code != tt.code {
				t.Fatalf("SetRetention = %v, want code %q", err, tt.code)
			}
			want := tt.r
			if tt.code != "" {
				want = old
			} else if got != tt.r {
				t.Errorf("SetRetention = %+v, want %+v", got, tt.r)
			}
			if got := st.svc.Retention(site); got != want {
				t.Errorf("Retention in force = %+v, want %+v", got, want)
			}
			stored, err := st.store.Retentions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := stored[site.ID]; ok != (tt.code == "") || ok && r != tt.r {
				t.Errorf("stored override = %+v (%v), want %+v stored: %v", r, ok, tt.r, tt.code == "")
			}
			changed, err := st.svc.RetentionChanged(ctx, dpo)
			if err != nil || changed.IsZero() != (tt.code != "") {
				t.Errorf("RetentionChanged = %v, %v; want a time only when stored", changed, err)
			}
			entries, _, err := st.store.AuditLog(ctx, site, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			var changes []visitor.AuditEntry
			for _, e := range entries {
				if e.Action == "retention.change" {
					changes = append(changes, e)
				}
			}
			switch {
			case tt.code != "" && len(changes) != 0:
				t.Errorf("a refused change is audited: %+v", changes)
			case tt.code == "" && (len(changes) != 1 || changes[0].OldRetention == nil || *changes[0].OldRetention != old ||
				changes[0].NewRetention == nil || *changes[0].NewRetention != tt.r || changes[0].Actor != "dpo"):
				t.Errorf("audit = %+v; want one retention.change by dpo from %+v to %+v", changes, old, tt.r)
			}

			st.clock.Advance(48 * time.Hour)
			if err := st.svc.RunRetentionJobs(ctx, "pod-a"); err != nil {
				t.Fatal(err)
			}
			_, err = st.store.Chat(ctx, site, chat.ChatID)
			if kept := err == nil; kept != tt.chat || err != nil && !errors.Is(err, visitor.ErrNotFound) {
				t.Errorf("chat after the job: %v; want kept %v", err, tt.chat)
			}
		})
	}
}

// A retention change reaches every pod: another Service over the same store
// applies the old windows until it refreshes its overrides.
func TestRetentionReachesOtherPods(t *testing.T) {
	t.Parallel()
	site := domainSite()
	st := newStack(t, []*visitor.Site{site}, domainDevices{}, domainLocator{})
	ctx := context.Background()
	sites, err := visitor.NewSites([]*visitor.Site{site})
	if err != nil {
		t.Fatal(err)
	}
	other := visitor.NewService(visitor.Deps{Sites: sites, Store: st.store, Signer: st.signer, Hasher: st.hasher, Sealer: st.sealer,
		Devices: domainDevices{}}, visitor.WithClock(st.clock.Now))
	r := site.Retention
	r.Sessions = 30
	if _, err := st.svc.SetRetention(ctx, visitor.Actor{Site: site, KeyID: "dpo", Role: visitor.RolePrivacy}, r); err != nil {
		t.Fatal(err)
	}
	if got, want := other.Retention(site), site.Retention; got != want {
		t.Errorf("other pod before its refresh: %+v, want the sites file's %+v", got, want)
	}
	if err := other.RefreshRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if got := other.Retention(site); got != r {
		t.Errorf("other pod after its refresh: %+v, want %+v", got, r)
	}
}
