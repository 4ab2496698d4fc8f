package visitor

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// RetentionRefresh is how often each pod reloads retention overrides, so a new
// window reaches new writes on every pod within 10 s.
const RetentionRefresh = 5 * time.Second

// RetentionStore keeps retention overrides and the re-expiry jobs they start.
type RetentionStore interface {
	// Retentions returns every site's override; sites without one are absent.
	Retentions(ctx context.Context) (map[string]Retention, error)
	// SaveRetention stores site's override and, when shorter says so, asks for a
	// re-expiry job that applies it to data already stored.
	SaveRetention(ctx context.Context, site *Site, r Retention, shorter bool) error
	// RetentionChanged returns when site's override was last saved, the zero
	// time when it has none.
	RetentionChanged(ctx context.Context, site *Site) (time.Time, error)
}

// retentions is the in-process cache of overrides, replaced whole on refresh.
type retentions struct {
	m atomic.Pointer[map[string]Retention]
}

// Retention returns the retention in force for site: its override, else the
// sites file's.
func (s *Service) Retention(site *Site) Retention {
	if m := s.retention.m.Load(); m != nil {
		if r, ok := (*m)[site.ID]; ok {
			return r
		}
	}
	return site.Retention
}

// RefreshRetention reloads the overrides from the store.
func (s *Service) RefreshRetention(ctx context.Context) error {
	m, err := s.store.Retentions(ctx)
	if err != nil {
		return fmt.Errorf("refresh retention: %w", err)
	}
	s.retention.m.Store(&m)
	return nil
}

// RetentionBounds are the bounds of retention windows in days. AuditMin is
// the shortest audit window a privacy key may set; 0 means
// DefaultAuditMinDays.
type RetentionBounds struct{ Min, Max, AuditMin int }

// RetentionBounds returns the bounds a retention change must keep to.
func (s *Service) RetentionBounds() RetentionBounds { return s.bounds }

// RetentionChanged returns when the actor's site's windows were last changed
// through the API; the zero time while the sites file's windows apply.
func (s *Service) RetentionChanged(ctx context.Context, a Actor) (time.Time, error) {
	t, err := s.store.RetentionChanged(ctx, a.Site)
	if err != nil {
		return time.Time{}, fmt.Errorf("retention of %s: %w", a.Site.ID, err)
	}
	return t, nil
}

// WithRetentionBounds sets VISITORD_RETENTION_MIN_DAYS and _MAX_DAYS.
func WithRetentionBounds(min, max int) Option {
	return func(s *Service) { s.bounds.Min, s.bounds.Max = min, max }
}

// auditMin is the shortest audit window a privacy key may set.
func (b RetentionBounds) auditMin() int {
	if b.AuditMin == 0 {
		return DefaultAuditMinDays
	}
	return b.AuditMin
}

// SetRetention replaces a site's retention windows. Each must lie within the
// bounds and consents ≥ max(profiles, consent_valid_days), and audit may not be
// set below the audit minimum (the role that is audited cannot shorten its own
// trail; a window the platform configured below it may be kept as it is), else
// ErrRetentionBounds. A shorter window starts a re-expiry job for data already
// stored; a longer one applies to new writes only. The change is audited with
// the old and new windows.
func (s *Service) SetRetention(ctx context.Context, a Actor, r Retention) (Retention, error) {
	site := a.Site
	if err := site.ValidateRetention(r, s.bounds.Min, s.bounds.Max); err != nil {
		return Retention{}, err
	}
	old := s.Retention(site)
	if floor := s.bounds.auditMin(); r.Audit < floor && r.Audit != old.Audit {
		return Retention{}, Errorf(ERetentionBounds, "retention audit is %d days, below the minimum of %d days (VISITORD_AUDIT_MIN_DAYS)",
			r.Audit, floor)
	}
	shorter := r.Sessions < old.Sessions || r.Profiles < old.Profiles || r.Chats < old.Chats ||
		r.Consents < old.Consents || r.Audit < old.Audit
	if err := s.store.SaveRetention(ctx, site, r, shorter); err != nil {
		return Retention{}, fmt.Errorf("set retention of %s: %w", site.ID, err)
	}
	// This pod applies the new window at once; the others within RetentionRefresh.
	if m := s.retention.m.Load(); m != nil {
		next := make(map[string]Retention, len(*m)+1)
		for k, v := range *m {
			next[k] = v
		}
		next[site.ID] = r
		s.retention.m.Store(&next)
	} else {
		s.retention.m.Store(&map[string]Retention{site.ID: r})
	}
	e := s.auditEntry(site, a.KeyID, "retention.change", subject{"site", site.ID})
	e.OldRetention, e.NewRetention = &old, &r
	if err := s.writeAudit(ctx, site, 0, e); err != nil {
		return Retention{}, err
	}
	return r, nil
}
