package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// auditFields is how many ARGV values one entry takes in auditScript.
const auditFields = 5

// auditScript appends entries to a site's audit stream, folds repeated reads
// into their entry, trims the stream by MINID to the audit window and keeps its
// TTL at the window.
var auditScript = declare("audit.lua", "lib_audit_add.lua")

// auditArgs are audit.lua's KEYS and ARGV by name.
type auditArgs struct {
	site    string
	now     time.Time
	window  time.Duration
	fold    time.Duration
	entries []visitor.AuditEntry
}

func (a auditArgs) call() *call {
	keys := make([]string, 0, 1+len(a.entries))
	keys = append(keys, auditKey(a.site))
	for _, e := range a.entries {
		keys = append(keys, auditFoldKey(a.site, e.Actor, e.Action, e.Target))
	}
	args := make([]any, 0, 4+auditFields*len(a.entries))
	args = append(args, ms(a.now), ms(a.now.Add(-a.window)), a.window.Milliseconds(), a.fold.Milliseconds())
	for _, e := range a.entries {
		old, cur := "", ""
		if e.OldRetention != nil && e.NewRetention != nil {
			old, cur = retentionSignature(*e.OldRetention), retentionSignature(*e.NewRetention)
		}
		args = append(args, e.Actor, e.Action, e.Target, old, cur)
	}
	return &call{script: auditScript, keys: keys, args: args}
}

// decodeAudit reads audit.lua's reply: the stream ids written, one per entry.
func decodeAudit(c *call) ([]string, error) {
	ids, err := c.cmd.StringSlice()
	if err != nil {
		return nil, translate(err)
	}
	return ids, nil
}

// Audit appends entries to the site's audit stream in one script: repeated
// reads within fold are folded into their entry's count, and the stream is
// trimmed to r's audit window and expires that window after this write.
// Entries carry the time of the first; all are written at it.
func (s *Store) Audit(ctx context.Context, site *visitor.Site, r visitor.Retention, fold time.Duration, entries ...visitor.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	c := auditArgs{site: site.ID, now: entries[0].Time, window: days(r.Audit), fold: fold, entries: entries}.call()
	if err := s.run(ctx, c); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := decodeAudit(c); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditLog returns up to n audit entries older than the entry id before ("" for
// the newest), newest first.
func (s *Store) AuditLog(ctx context.Context, site *visitor.Site, before string, n int) ([]visitor.AuditEntry, string, error) {
	max := "+"
	if before != "" {
		if zeroStreamID(before) {
			return nil, "", nil // nothing is older than the smallest id, which Redis cannot exclude
		}
		max = "(" + before
	}
	msgs, err := s.c.XRevRangeN(ctx, auditKey(site.ID), max, "-", int64(n)).Result()
	if err != nil {
		return nil, "", fmt.Errorf("audit log: %w", translate(err))
	}
	out := make([]visitor.AuditEntry, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, auditEntry(m))
	}
	next := ""
	if len(msgs) == n {
		next = msgs[len(msgs)-1].ID
	}
	return out, next, nil
}

// zeroStreamID reports whether id is the stream id 0-0, however written.
func zeroStreamID(id string) bool {
	ms, seq, _ := strings.Cut(id, "-")
	m, err1 := strconv.ParseUint(ms, 10, 64)
	q, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil && m == 0 && q == 0
}

// auditEntry decodes a stream entry; entries written before folding existed
// have no l or n and count once.
func auditEntry(m redis.XMessage) visitor.AuditEntry {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	e := visitor.AuditEntry{ID: m.ID, Time: msTime(str("t")), Actor: str("actor"), Action: str("action"), Target: str("target")}
	e.Last, e.Count = e.Time, 1
	if l := str("l"); l != "" {
		e.Last = msTime(l)
	}
	if n, err := strconv.Atoi(str("n")); err == nil && n > 0 {
		e.Count = n
	}
	if old, ok := parseRetention(str("ro")); ok {
		if cur, ok := parseRetention(str("rn")); ok {
			e.OldRetention, e.NewRetention = &old, &cur
		}
	}
	return e
}

// parseRetention reads retentionSignature's form back.
func parseRetention(sig string) (visitor.Retention, bool) {
	f := strings.Split(sig, ",")
	if len(f) != 5 {
		return visitor.Retention{}, false
	}
	var d [5]int
	for i, v := range f {
		n, err := strconv.Atoi(v)
		if err != nil {
			return visitor.Retention{}, false
		}
		d[i] = n
	}
	return visitor.Retention{Sessions: d[0], Profiles: d[1], Chats: d[2], Consents: d[3], Audit: d[4]}, true
}
