package visitor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AuditEntry is one line of a site's audit trail: who did what to whom, the
// target named by a keyed hash so that it points at no one after an erasure.
// Repeated reads of one target by one key within AuditFold of the entry's
// first read are one entry: Time is the first, Last the latest, Count how many.
type AuditEntry struct {
	ID     string
	Time   time.Time
	Last   time.Time
	Count  int
	Actor  string
	Action string
	Target string
	// OldRetention and NewRetention are the windows before and after a
	// retention change; nil for other actions.
	OldRetention, NewRetention *Retention
}

// AuditFold is how long after an entry's first read the same key reading the
// same target again adds to that entry's count instead of writing a new one:
// a console refreshing a chat every 5 s writes 6 entries an hour, not 720.
const AuditFold = 10 * time.Minute

// AuditStore keeps a site's audit trail.
type AuditStore interface {
	// Audit appends entries (each Time, Actor, Action, Target and, for a
	// retention change, the windows) to the site's trail in one write, trimmed
	// to retention's audit window. With fold > 0, an entry whose actor, action
	// and target match an entry first written less than fold before adds one to
	// that entry's count and becomes its Last instead.
	Audit(ctx context.Context, site *Site, retention Retention, fold time.Duration, entries ...AuditEntry) error
	// AuditLog returns up to n entries older than the entry id before ("" for
	// the newest), newest first; next is "" at the end. before must be an id
	// the trail gave (ValidAuditCursor).
	AuditLog(ctx context.Context, site *Site, before string, n int) (entries []AuditEntry, next string, err error)
}

// MaxAuditPage bounds a page of the audit trail.
const MaxAuditPage = 200

// DefaultAuditMinDays is the shortest audit window a privacy key may set unless
// WithAuditMinDays says otherwise (VISITORD_AUDIT_MIN_DAYS).
const DefaultAuditMinDays = 365

// WithAuditMinDays sets VISITORD_AUDIT_MIN_DAYS: the role that is audited cannot
// shorten its own trail below it.
func WithAuditMinDays(days int) Option {
	return func(s *Service) { s.bounds.AuditMin = days }
}

// ValidAuditCursor reports whether cursor has the shape of an entry id of the
// trail: "<ms>-<seq>", both unsigned 64-bit numbers.
func ValidAuditCursor(cursor string) bool {
	ms, seq, ok := strings.Cut(cursor, "-")
	if !ok || ms == "" || seq == "" || ms[0] == '+' || seq[0] == '+' {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

// AuditTrail lists a site's audit trail, newest first. With target, only the
// entries about that id (a visitor, a chat or the site) are listed: the trail
// names them by keyed hash, so the id is hashed the same way here. A target
// that is an e-mail is ErrInvalid: the target travels in a URL, and an e-mail
// never does (the search by e-mail names the visitors and chats behind it, and
// is audited under each). A cursor that is not one the trail gave is ErrInvalid.
func (s *Service) AuditTrail(ctx context.Context, a Actor, target, cursor string, limit int) ([]AuditEntry, string, error) {
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > MaxAuditPage {
		return nil, "", Errorf(EInvalid, "limit must be 1..%d", MaxAuditPage)
	}
	if cursor != "" && !ValidAuditCursor(cursor) {
		return nil, "", Errorf(EInvalid, "cursor is not valid")
	}
	if strings.Contains(target, "@") {
		return nil, "", Errorf(EInvalid, "target must be a visitor or chat id; an e-mail never travels in a URL, search subjects by e-mail instead")
	}
	site := a.Site
	want := map[string]bool{}
	if target != "" {
		for _, kind := range []string{"visitor", "chat", "site"} {
			want[s.AuditTarget(site.ID, kind, target)] = true
		}
	}
	var out []AuditEntry
	next := cursor
	// A filtered page may need several reads; each is bounded, and so is the trail.
	for len(out) < limit {
		entries, n, err := s.audits.AuditLog(ctx, site, next, MaxAuditPage)
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

// AuditTarget names a subject in the audit trail by a keyed hash of its kind and id.
func (s *Service) AuditTarget(site, kind, id string) string {
	return s.hasher.Short(site, PurposeAudit, kind+":"+id)
}

// subject is one data subject (or the site, or an e-mail) an action touched.
type subject struct{ kind, id string }

// audit records a change (never folded) of one target.
func (s *Service) audit(ctx context.Context, site *Site, actor, action, kind, id string) error {
	return s.writeAudit(ctx, site, 0, s.auditEntry(site, actor, action, subject{kind, id}))
}

// auditRead records a read that revealed the data of each of subjects, one
// entry per subject, so that the trail answers "who saw this person's data"
// for each; repeats within AuditFold are folded into their entry's count.
func (s *Service) auditRead(ctx context.Context, site *Site, actor, action string, subjects ...subject) error {
	entries := make([]AuditEntry, 0, len(subjects))
	seen := make(map[subject]bool, len(subjects))
	for _, sj := range subjects {
		if sj.id == "" || seen[sj] {
			continue
		}
		seen[sj] = true
		entries = append(entries, s.auditEntry(site, actor, action, sj))
	}
	return s.writeAudit(ctx, site, AuditFold, entries...)
}

func (s *Service) auditEntry(site *Site, actor, action string, sj subject) AuditEntry {
	return AuditEntry{Time: utc(s.now()), Count: 1, Actor: actor, Action: action, Target: s.AuditTarget(site.ID, sj.kind, sj.id)}
}

func (s *Service) writeAudit(ctx context.Context, site *Site, fold time.Duration, entries ...AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := s.audits.Audit(ctx, site, s.Retention(site), fold, entries...); err != nil {
		return fmt.Errorf("audit %s: %w", entries[0].Action, err)
	}
	return nil
}
