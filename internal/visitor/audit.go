package visitor

import (
	"context"
	"fmt"
)

// AuditStore reads a site's audit trail.
type AuditStore interface {
	// AuditLog returns up to n entries older than the entry id before ("" for
	// the newest), newest first; next is "" at the end.
	AuditLog(ctx context.Context, site *Site, before string, n int) (entries []AuditEntry, next string, err error)
}

// MaxAuditPage bounds a page of the audit trail.
const MaxAuditPage = 200

// AuditTrail lists a site's audit trail, newest first. With target, only the
// entries about that id (a visitor, a chat, an e-mail or the site) are listed:
// the trail names them by keyed hash, so the id is hashed the same way here.
func (s *Service) AuditTrail(ctx context.Context, a Actor, target, cursor string, limit int) ([]AuditEntry, string, error) {
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > MaxAuditPage {
		return nil, "", fmt.Errorf("%w: limit must be 1..%d", ErrInvalid, MaxAuditPage)
	}
	site := a.Site
	want := map[string]bool{}
	if target != "" {
		for _, kind := range []string{"visitor", "chat", "site"} {
			want[s.AuditTarget(site.ID, kind, target)] = true
		}
		want[s.AuditTarget(site.ID, "email", NormalizeEmail(target))] = true
	}
	var out []AuditEntry
	next := cursor
	// A filtered page may need several reads; each is bounded, and so is the trail.
	for len(out) < limit {
		entries, n, err := s.store.AuditLog(ctx, site, next, MaxAuditPage)
		if err != nil {
			return nil, "", fmt.Errorf("audit trail of %s: %w", site.ID, err)
		}
		for i, e := range entries {
			if len(want) == 0 || want[e.Target] {
				out = append(out, e)
				if len(out) == limit {
					if i < len(entries)-1 {
						return out, e.ID, nil
					}
					return out, n, nil
				}
			}
		}
		if n == "" {
			return out, "", nil
		}
		next = n
	}
	return out, next, nil
}
