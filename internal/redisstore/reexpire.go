package redisstore

// The re-expiry job applies a retention window that shrank to the data already
// stored; its keys (lk:, ck:) are in the key schema in keys.go.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// reexpireLease is how long the job's lock outlives its last batch. It is
// shorter than the checkpoint's TTL (LockTTL), so that after a crash another pod
// takes the job over from the checkpoint well within the minute DESIGN.md allows
// for a shorter window to reach stored data; a batch takes milliseconds.
const reexpireLease = 30 * time.Second

// reexpireSettle is how long after a retention change pods may still write with
// the old windows: each reloads overrides every visitor.RetentionRefresh, so new
// writes take a new window within 2 × RetentionRefresh (DESIGN.md: 10 s); the
// rest is margin for clock skew. A pass that started sooner may have missed such
// writes, so it leaves the flag for one more pass.
const reexpireSettle = 3 * visitor.RetentionRefresh

func reexpireLockKey(site string) string { return "lk:{" + site + "}:reexpire" }

func reexpireCheckpointKey(site string) string { return "ck:{" + site + "}:reexpire" }

// retentionSignature names a set of windows as the checkpoint and the override
// compare them: "sessions,profiles,chats,consents,audit" in days.
func retentionSignature(r visitor.Retention) string {
	return fmt.Sprintf("%d,%d,%d,%d,%d", r.Sessions, r.Profiles, r.Chats, r.Consents, r.Audit)
}

// reexpireVisitorScript re-expires one visitor on its slot: the profile from its
// write time (w) with the profiles window, after migrating a profile that still
// holds session data (sessionLua); each session record (list and hash) from its
// last write (its score in the session index) with the sessions window, dropping
// the gone ones from the index; the session index from its newest session with
// the profiles window (or the sessions window, if longer); the chat index and the blind-index list from the newest
// chat's start with the chats window (chats past it leave the index); the
// consent records. The consent choice keeps its expiry: the choice's validity.
var reexpireVisitorScript = declare("reexpire_visitor.lua", "lib_reexpire.lua", "lib_session.lua")

// reexpireChatScript re-expires a chat from its start (t) with the chats
// window, and its queued delivery with it; with a second key, the consent
// records of a chat without identity.
var reexpireChatScript = declare("reexpire_chat.lua", "lib_reexpire.lua")

// reexpireProofScript re-expires the consent proof an erased chat left.
var reexpireProofScript = declare("reexpire_proof.lua", "lib_reexpire.lua")

// reexpireIndexScript brings the expiry of subjects in an e-mail's blind index
// forward (never back), drops the past ones and expires the index with its
// highest score.
var reexpireIndexScript = declare("reexpire_index.lua", "lib_reexpire.lua")

// reexpireStartScript begins a batch: it takes or renews the lock, starts a pass
// when there is no checkpoint or the flag or the windows changed since the
// pass began (trimming the audit stream to its window and the subject index to
// the subjects whose data has not expired then, once per pass), and
// returns the next subjects after the checkpoint in score order.
var reexpireStartScript = declare("reexpire_start.lua")

// reexpireEndScript ends a batch: it drops from the subject index the subjects
// left without data (unless written since), then either moves the checkpoint
// and renews lock and checkpoint, or, at the end of the walk, deletes them and
// the flag — unless the flag was set again since the pass began, the pass began
// before every pod could have the new windows (reexpireSettle), or the windows
// it applied are not the override's: then the flag stays for another pass.
var reexpireEndScript = declare("reexpire_end.lua")

// schemaVersion is the version of the stored data's layout the job brings every
// subject to: 2 moved what a session observed from the profile into the session
// record (issue 17).
const schemaVersion = "2"

// pendingScript reports whether the re-expiry job has work; a site whose data
// may have been written under an older layout (schema key below schemaVersion,
// subjects stored) gets the job's flag once, so that one pass migrates every
// subject, including those that never come back. A site without data needs none.
var pendingScript = declare("pending.lua")

// PendingReexpiry reports whether a retention window of site shrank (or its
// data's layout changed) and the re-expiry job has yet to apply it to the data
// already stored.
func (s *Store) PendingReexpiry(ctx context.Context, site *visitor.Site) (bool, error) {
	c := &call{script: pendingScript, keys: []string{schemaKey(site.ID), reexpireKey(site.ID), subjectsKey(site.ID)}, args: []any{schemaVersion, ms(time.Now())}}
	if err := s.run(ctx, c); err != nil {
		return false, fmt.Errorf("pending re-expiry of %s: %w", site.ID, err)
	}
	n, err := c.cmd.Int64()
	if err != nil {
		return false, fmt.Errorf("pending re-expiry of %s: %w", site.ID, translate(err))
	}
	return n > 0, nil
}

// ReexpireBatch runs one batch of site's re-expiry job as owner: it takes (or
// renews) the job's lock, walks the next batch subjects of the subject index
// from the checkpoint, expires each of their records at its write time plus
// r's window (deleting what is past by now, never extending an expiry) and
// moves the checkpoint. done is true once the walk reached the end; the flag is
// then cleared unless another pass is needed (PendingReexpiry says so). It
// returns visitor.ErrJobHeld (wrapped) while another owner holds the job.
func (s *Store) ReexpireBatch(ctx context.Context, site *visitor.Site, r visitor.Retention, now time.Time, owner string, batch int) (done bool, err error) {
	batch = max(batch, 1)
	id := site.ID
	lock, ck := reexpireLockKey(id), reexpireCheckpointKey(id)
	v, err := reexpireStartScript.Run(ctx, s.c, []string{lock, ck, subjectsKey(id), reexpireKey(id), auditKey(id)},
		owner, reexpireLease.Milliseconds(), LockTTL.Milliseconds(), ms(now), batch, retentionSignature(r),
		days(r.Audit).Milliseconds()).Slice()
	if err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, translate(err))
	}
	if len(v) == 0 {
		return false, fmt.Errorf("re-expire %s: empty script answer", id)
	}
	switch status, _ := v[0].(string); status {
	case "held":
		return false, fmt.Errorf("re-expire %s: %w", id, visitor.ErrJobHeld)
	case "none":
		return true, nil
	case "ok":
	default:
		return false, fmt.Errorf("re-expire %s: unexpected script answer %q", id, status)
	}
	subjects := make([]string, 0, (len(v)-1)/2)
	scores := make([]string, 0, (len(v)-1)/2)
	for i := 1; i+1 < len(v); i += 2 {
		m, _ := v[i].(string)
		sc, _ := v[i+1].(string)
		subjects, scores = append(subjects, m), append(scores, sc)
	}
	emptied, err := s.reexpireSubjects(ctx, site, r, now, subjects)
	if err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, err)
	}
	end := len(subjects) < batch
	args := []any{owner, reexpireLease.Milliseconds(), LockTTL.Milliseconds(), bit(end), "", "", reexpireSettle.Milliseconds()}
	if n := len(subjects); n > 0 {
		args[4], args[5] = scores[n-1], subjects[n-1]
	}
	for _, i := range emptied {
		args = append(args, subjects[i], scores[i])
	}
	res, err := reexpireEndScript.Run(ctx, s.c, []string{lock, ck, subjectsKey(id), reexpireKey(id), retentionKey(id)}, args...).Text()
	if err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, translate(err))
	}
	switch res {
	case "held":
		// The lease ran out mid-batch and another owner took the job over; the
		// batch is done again from the checkpoint, which is harmless.
		return false, fmt.Errorf("re-expire %s: %w", id, visitor.ErrJobHeld)
	case "ok":
		return false, nil
	case "kept", "cleared":
		return true, nil
	default:
		return false, fmt.Errorf("re-expire %s: unexpected script answer %q", id, res)
	}
}

// indexUpdate is one subject's new expiry in an e-mail's blind index.
type indexUpdate struct {
	member string
	until  int64 // ms; 0 when the subject has no chat left
}

// reexpireSubjects re-expires one batch of subjects (vkeys and "c:<chat id>")
// and returns the positions of those left without data. Each subject is one
// script on its own slot, all in one pipeline; then, in one pipeline each, the
// chats of the visitors (their own slots) and the blind-index entries.
func (s *Store) reexpireSubjects(ctx context.Context, site *visitor.Site, r visitor.Retention, now time.Time, subjects []string) ([]int, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	id := site.ID
	nowMS := ms(now)
	sessions, profiles := days(r.Sessions).Milliseconds(), days(r.Profiles).Milliseconds()
	chats, consents := days(r.Chats).Milliseconds(), days(r.Consents).Milliseconds()
	calls := make([]*call, len(subjects))
	for i, m := range subjects {
		if subject, ok := strings.CutPrefix(m, "p:"); ok {
			calls[i] = &call{script: reexpireProofScript, keys: []string{proofKey(id, subject)}, args: []any{nowMS, consents}}
			continue
		}
		if chatID, ok := strings.CutPrefix(m, "c:"); ok {
			ck := chatKey(id, chatID)
			calls[i] = &call{script: reexpireChatScript, keys: []string{ck, ck + ":r"}, args: []any{nowMS, chats, consents}}
			continue
		}
		k := keysOf(id, m)
		calls[i] = &call{script: reexpireVisitorScript, keys: []string{k.profile, k.sessions, k.chats, k.indexes, k.records, k.withdrawn},
			args: []any{nowMS, sessions, profiles, chats, consents}}
	}
	if err := s.run(ctx, calls...); err != nil {
		return nil, err
	}

	// What the subject scripts found: emptied subjects, visitors' chats to
	// re-expire on their own slots, and blind-index entries to bring forward.
	var emptied []int
	var chatCalls []*call
	var chatOwner []int // visitor index of each chat call
	vids := make([]string, len(subjects))
	type visitorIndexes struct {
		keys  []string
		until int64
	}
	visitorIdx := map[int]visitorIndexes{}
	indexes := map[string][]indexUpdate{}
	for i, c := range calls {
		if c.script == reexpireProofScript {
			if left, err := c.cmd.Int64(); err != nil {
				return nil, translate(err)
			} else if left == 0 {
				emptied = append(emptied, i)
			}
			continue
		}
		v, err := c.cmd.Slice()
		if err != nil {
			return nil, translate(err)
		}
		if c.script == reexpireChatScript {
			if len(v) < 5 {
				return nil, fmt.Errorf("unexpected chat script answer of %d items", len(v))
			}
			if left, _ := v[4].(int64); left == 0 {
				emptied = append(emptied, i)
			}
			if ei, _ := v[2].(string); ei != "" {
				indexes[ei] = append(indexes[ei], indexUpdate{member: subjects[i], until: atoi(v[3])})
			}
			continue
		}
		if len(v) < 4 {
			return nil, fmt.Errorf("unexpected visitor script answer of %d items", len(v))
		}
		if left, _ := v[0].(int64); left == 0 {
			emptied = append(emptied, i)
		}
		vids[i], _ = v[1].(string)
		n, _ := v[3].(int64)
		if n > 0 && int(n) <= len(v)-4 {
			vi := visitorIndexes{until: atoi(v[2])}
			for _, k := range v[4 : 4+n] {
				if ks, _ := k.(string); ks != "" {
					vi.keys = append(vi.keys, ks)
				}
			}
			visitorIdx[i] = vi
		}
		for _, cid := range v[4+int(n):] {
			if cs, _ := cid.(string); cs != "" {
				chatCalls = append(chatCalls, &call{script: reexpireChatScript, keys: []string{chatKey(id, cs)}, args: []any{nowMS, chats, consents}})
				chatOwner = append(chatOwner, i)
			}
		}
	}
	if len(chatCalls) > 0 {
		if err := s.run(ctx, chatCalls...); err != nil {
			return nil, err
		}
		for j, c := range chatCalls {
			v, err := c.cmd.Slice()
			if err != nil {
				return nil, translate(err)
			}
			if i := chatOwner[j]; vids[i] == "" && len(v) > 1 {
				vids[i], _ = v[1].(string)
			}
		}
	}
	for i, vi := range visitorIdx {
		if vids[i] == "" {
			continue // nothing names the visitor any more: its entries lapse with their own scores
		}
		for _, k := range vi.keys {
			indexes[k] = append(indexes[k], indexUpdate{member: "v:" + vids[i], until: vi.until})
		}
	}
	if len(indexes) > 0 {
		idx := make([]*call, 0, len(indexes))
		for k, ups := range indexes {
			// Only keys of this site: the list is data, and a key of another
			// site or slot family must never be written from here.
			if !strings.HasPrefix(k, "e:{"+id+":") {
				continue
			}
			args := make([]any, 0, 1+2*len(ups))
			args = append(args, nowMS)
			for _, u := range ups {
				args = append(args, u.member, u.until)
			}
			idx = append(idx, &call{script: reexpireIndexScript, keys: []string{k}, args: args})
		}
		if err := s.run(ctx, idx...); err != nil {
			return nil, err
		}
	}
	return emptied, nil
}

// atoi reads a script's number, sent as a string or an integer.
func atoi(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}
