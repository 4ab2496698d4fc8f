package visitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// RetentionRefresh is how often each pod reloads retention overrides, so a new
// window reaches new writes on every pod within 10 s.
const RetentionRefresh = 5 * time.Second

// RetentionStore keeps retention overrides and runs the re-expiry jobs that
// apply a shorter window to the data already stored (DESIGN.md, Storage). Its
// methods return ErrStoreUnavailable (wrapped) when the store cannot be
// reached in time.
type RetentionStore interface {
	// Retentions returns every site's override; sites without one are absent.
	Retentions(ctx context.Context) (map[string]Retention, error)
	// SaveRetention stores site's override and, when shorter says so, asks for a
	// re-expiry job that applies it to data already stored.
	SaveRetention(ctx context.Context, site *Site, r Retention, shorter bool) error
	// RetentionChanged returns when site's override was last saved, the zero
	// time when it has none.
	RetentionChanged(ctx context.Context, site *Site) (time.Time, error)
	// PendingReexpiry reports whether a window of site shrank and the job has yet
	// to apply it to stored data.
	PendingReexpiry(ctx context.Context, site *Site) (bool, error)
	// ReexpireBatch runs the next batch subjects of site's job as owner under
	// r's windows, as of now: each record then expires at its write time plus its
	// window (deleted when that is past), and no expiry is ever extended. done is
	// true once the walk over the site's subjects reached its end. It returns
	// ErrJobHeld (wrapped) while another owner holds the job.
	ReexpireBatch(ctx context.Context, site *Site, r Retention, now time.Time, owner string, batch int) (done bool, err error)
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
	m, err := s.retain.Retentions(ctx)
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
	t, err := s.retain.RetentionChanged(ctx, a.Site)
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
	if err := s.retain.SaveRetention(ctx, site, r, shorter); err != nil {
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

// ErrJobHeld reports that another worker holds a job's lock. It is no failure:
// the job is in hand, and the holder's pod (or, after a crash, any pod once the
// lock's lease ran out) carries it on.
var ErrJobHeld = errors.New("job held by another worker")

// ReexpiryBatch is how many subjects one step of a re-expiry job handles.
const ReexpiryBatch = 500

// RunRetentionJobs runs, as owner, the re-expiry job of every site whose
// retention shrank, batch after batch until each walk ends or ctx is done. A job
// another pod holds is left to it. It returns the errors of the sites that failed.
func (s *Service) RunRetentionJobs(ctx context.Context, owner string) error {
	var errs []error
	refreshed := false
	for _, site := range s.sites.All() {
		pending, err := s.retain.PendingReexpiry(ctx, site)
		if err != nil {
			errs = append(errs, fmt.Errorf("retention job of %s: %w", site.ID, err))
			continue
		}
		if !pending {
			continue
		}
		// The flag is read before the windows: the override written with it
		// (one transaction) is then in the cache, even if it is a second old.
		if !refreshed {
			if err := s.RefreshRetention(ctx); err != nil {
				return errors.Join(append(errs, err)...)
			}
			refreshed = true
		}
		if err := s.runRetentionJob(ctx, site, owner); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// runRetentionJob runs site's re-expiry job until its walk ends.
func (s *Service) runRetentionJob(ctx context.Context, site *Site, owner string) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("retention job of %s: %w", site.ID, err)
		}
		done, err := s.retain.ReexpireBatch(ctx, site, s.Retention(site), s.Now(), owner, ReexpiryBatch)
		switch {
		case errors.Is(err, ErrJobHeld):
			return nil
		case err != nil:
			return fmt.Errorf("retention job of %s: %w", site.ID, err)
		case done:
			return nil
		}
	}
}

// RetentionLoop reloads the retention overrides and runs the re-expiry jobs
// at once and then every every (at most 10 s: a new window must reach new
// writes within that, and stored data within a minute), until ctx is done.
// Failures are logged and retried on the next round.
func (s *Service) RetentionLoop(ctx context.Context, owner string, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = RetentionRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.RefreshRetention(ctx); err != nil && ctx.Err() == nil {
			log.Warn("retention refresh", slog.String("error", err.Error()))
		}
		if err := s.RunRetentionJobs(ctx, owner); err != nil && ctx.Err() == nil {
			log.Warn("retention jobs", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
