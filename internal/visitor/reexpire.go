package visitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrJobHeld reports that another worker holds a job's lock. It is no failure:
// the job is in hand, and the holder's pod (or, after a crash, any pod once the
// lock's lease ran out) carries it on.
var ErrJobHeld = errors.New("job held by another worker")

// ReexpiryBatch is how many subjects one step of a re-expiry job handles.
const ReexpiryBatch = 500

// ReexpiryStore runs the re-expiry jobs that apply a shorter retention window to
// the data already stored (DESIGN.md, Storage).
type ReexpiryStore interface {
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

// RunRetentionJobs runs, as owner, the re-expiry job of every site whose
// retention shrank, batch after batch until each walk ends or ctx is done. A job
// another pod holds is left to it. It returns the errors of the sites that failed.
func (s *Service) RunRetentionJobs(ctx context.Context, owner string) error {
	var errs []error
	refreshed := false
	for _, site := range s.sites.All() {
		pending, err := s.store.PendingReexpiry(ctx, site)
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
		done, err := s.store.ReexpireBatch(ctx, site, s.Retention(site), s.Now(), owner, ReexpiryBatch)
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
