package redisstore

// Retention: the sites' overrides, the subject index every subject enters, and
// the re-expiry job that applies a window that shrank to the data already
// stored (its keys, lk: and ck:, are in the key schema in keys.go).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

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

// retentionSignature names a set of windows as the checkpoint and the override
// compare them: "sessions,profiles,chats,consents,audit" in days.
func retentionSignature(r visitor.Retention) string {
	return fmt.Sprintf("%d,%d,%d,%d,%d", r.Sessions, r.Profiles, r.Chats, r.Consents, r.Audit)
}

// schemaVersion is the version of the stored data's layout the job brings every
// subject to: 2 moved what a session observed from the profile into the session
// record (issue 17).
const schemaVersion = "2"

// indexUpdate is one subject's new expiry in an e-mail's blind index.
type indexUpdate struct {
	member string
	until  int64 // ms; 0 when the subject has no chat left
}

// subjectScript enters a subject in the site's subject index scored by the
// expiry of its data, or removes it (subject.lua).
var subjectScript = declare("subject.lua")

// subjectArgs are subject.lua's KEYS and ARGV by name.
type subjectArgs struct {
	key    string // sj:{site}
	member string
	until  time.Time // when the subject's data expires; zero: remove the subject
	now    time.Time
}

func (a subjectArgs) call() *call {
	var until any = ""
	if !a.until.IsZero() {
		until = ms(a.until)
	}
	return &call{script: subjectScript, keys: []string{a.key}, args: []any{a.member, until, ms(a.now)}}
}

// subjectCall enters a subject in the site's subject index, which the retention
// job walks, scored by until: when the subject's data expires.
func subjectCall(site string, subject string, until, now time.Time) *call {
	return subjectArgs{key: subjectsKey(site), member: subject, until: until, now: now}.call()
}

// windows are a retention's windows as the re-expiry scripts take them.
type windows struct{ sessions, profiles, chats, consents time.Duration }

func windowsOf(r visitor.Retention) windows {
	return windows{sessions: days(r.Sessions), profiles: days(r.Profiles), chats: days(r.Chats), consents: days(r.Consents)}
}

// reexpireVisitorScript re-expires one visitor on its slot (reexpire_visitor.lua).
var reexpireVisitorScript = declare("reexpire_visitor.lua", "lib_reexpire.lua", "lib_session.lua")

// reexpireVisitorArgs are reexpire_visitor.lua's KEYS and ARGV by name.
type reexpireVisitorArgs struct {
	keys visitorKeys
	now  time.Time
	w    windows
}

func (a reexpireVisitorArgs) call() *call {
	k := a.keys
	return &call{script: reexpireVisitorScript, keys: []string{k.profile, k.sessions, k.chats, k.indexes, k.records, k.withdrawn},
		args: []any{ms(a.now), a.w.sessions.Milliseconds(), a.w.profiles.Milliseconds(), a.w.chats.Milliseconds(), a.w.consents.Milliseconds()}}
}

// reexpireVisitorReply is reexpire_visitor.lua's reply.
type reexpireVisitorReply struct {
	left      bool   // some of the visitor's keys remain
	visitorID string // "" when nothing names the visitor any more
	// chatsUntil is the newest chat's expiry (ms), 0 when none is left.
	chatsUntil int64
	// indexes are the blind-index keys the visitor is entered in (only when it
	// had chats); chatIDs the chats of its index as it was.
	indexes, chatIDs []string
}

// decodeReexpireVisitor reads reexpire_visitor.lua's reply.
func decodeReexpireVisitor(c *call) (reexpireVisitorReply, error) {
	v, err := c.cmd.Slice()
	if err != nil {
		return reexpireVisitorReply{}, translate(err)
	}
	if len(v) < 4 {
		return reexpireVisitorReply{}, fmt.Errorf("unexpected visitor script answer of %d items", len(v))
	}
	left, _ := v[0].(int64)
	r := reexpireVisitorReply{left: left != 0, chatsUntil: atoi(v[2])}
	r.visitorID, _ = v[1].(string)
	n, _ := v[3].(int64)
	if n < 0 || int(n) > len(v)-4 {
		return reexpireVisitorReply{}, fmt.Errorf("unexpected visitor script answer: %d blind-index keys of %d items", n, len(v))
	}
	for _, k := range v[4 : 4+n] {
		if ks, _ := k.(string); ks != "" {
			r.indexes = append(r.indexes, ks)
		}
	}
	for _, id := range v[4+n:] {
		if s, _ := id.(string); s != "" {
			r.chatIDs = append(r.chatIDs, s)
		}
	}
	return r, nil
}

// reexpireChatScript re-expires a chat, its queued delivery and, for a chat
// without identity, its consent records (reexpire_chat.lua).
var reexpireChatScript = declare("reexpire_chat.lua", "lib_reexpire.lua")

// reexpireChatArgs are reexpire_chat.lua's KEYS and ARGV by name.
type reexpireChatArgs struct {
	chat    string
	records string // the chat's consent records; "" for a chat of a visitor
	now     time.Time
	w       windows
}

func (a reexpireChatArgs) call() *call {
	keys := []string{a.chat}
	if a.records != "" {
		keys = append(keys, a.records)
	}
	return &call{script: reexpireChatScript, keys: keys,
		args: []any{ms(a.now), a.w.chats.Milliseconds(), a.w.consents.Milliseconds()}}
}

// reexpireChatReply is reexpire_chat.lua's reply.
type reexpireChatReply struct {
	state      string // gone, deleted or kept
	visitorID  string
	blindIndex string // the chat's e-mail's blind-index key, "" for none
	until      int64  // the chat's expiry ms, 0 unless kept
	left       bool   // the chat or its records remain
}

// decodeReexpireChat reads reexpire_chat.lua's reply.
func decodeReexpireChat(c *call) (reexpireChatReply, error) {
	v, err := c.cmd.Slice()
	if err != nil {
		return reexpireChatReply{}, translate(err)
	}
	if len(v) < 5 {
		return reexpireChatReply{}, fmt.Errorf("unexpected chat script answer of %d items", len(v))
	}
	var r reexpireChatReply
	r.state, _ = v[0].(string)
	r.visitorID, _ = v[1].(string)
	r.blindIndex, _ = v[2].(string)
	r.until = atoi(v[3])
	left, _ := v[4].(int64)
	r.left = left != 0
	return r, nil
}

// reexpireProofScript re-expires the consent proof an erasure left (reexpire_proof.lua).
var reexpireProofScript = declare("reexpire_proof.lua", "lib_reexpire.lua")

// reexpireProofArgs are reexpire_proof.lua's KEYS and ARGV by name.
type reexpireProofArgs struct {
	key      string
	now      time.Time
	consents time.Duration
}

func (a reexpireProofArgs) call() *call {
	return &call{script: reexpireProofScript, keys: []string{a.key}, args: []any{ms(a.now), a.consents.Milliseconds()}}
}

// decodeLeft reads a 0|1 reply: whether data remains.
func decodeLeft(c *call) (bool, error) {
	n, err := c.cmd.Int64()
	if err != nil {
		return false, translate(err)
	}
	return n != 0, nil
}

// reexpireIndexScript brings subjects' expiry in an e-mail's blind index
// forward (reexpire_index.lua).
var reexpireIndexScript = declare("reexpire_index.lua", "lib_reexpire.lua")

// reexpireIndexArgs are reexpire_index.lua's KEYS and ARGV by name.
type reexpireIndexArgs struct {
	key     string
	now     time.Time
	updates []indexUpdate
}

func (a reexpireIndexArgs) call() *call {
	args := make([]any, 0, 1+2*len(a.updates))
	args = append(args, ms(a.now))
	for _, u := range a.updates {
		args = append(args, u.member, u.until)
	}
	return &call{script: reexpireIndexScript, keys: []string{a.key}, args: args}
}

// reexpireStartScript begins a batch of the re-expiry job (reexpire_start.lua).
var reexpireStartScript = declare("reexpire_start.lua")

// reexpireStartArgs are reexpire_start.lua's KEYS and ARGV by name.
type reexpireStartArgs struct {
	site          string
	owner         string
	lease         time.Duration
	checkpointTTL time.Duration
	now           time.Time
	batch         int
	signature     string // retentionSignature of the windows applied
	auditWindow   time.Duration
}

func (a reexpireStartArgs) call() *call {
	id := a.site
	return &call{script: reexpireStartScript,
		keys: []string{reexpireLockKey(id), reexpireCheckpointKey(id), subjectsKey(id), reexpireKey(id), auditKey(id)},
		args: []any{a.owner, a.lease.Milliseconds(), a.checkpointTTL.Milliseconds(), ms(a.now), a.batch, a.signature, a.auditWindow.Milliseconds()}}
}

// reexpireStartReply is reexpire_start.lua's reply: another owner holds the
// job, there is nothing to do, or the next subjects and their scores.
type reexpireStartReply struct {
	held, none bool
	subjects   []string
	scores     []string
}

// decodeReexpireStart reads reexpire_start.lua's reply.
func decodeReexpireStart(c *call) (reexpireStartReply, error) {
	v, err := c.cmd.Slice()
	if err != nil {
		return reexpireStartReply{}, translate(err)
	}
	if len(v) == 0 {
		return reexpireStartReply{}, errors.New("empty script answer")
	}
	switch status, _ := v[0].(string); status {
	case "held":
		return reexpireStartReply{held: true}, nil
	case "none":
		return reexpireStartReply{none: true}, nil
	case "ok":
	default:
		return reexpireStartReply{}, fmt.Errorf("unexpected script answer %q", status)
	}
	r := reexpireStartReply{subjects: make([]string, 0, (len(v)-1)/2), scores: make([]string, 0, (len(v)-1)/2)}
	for i := 1; i+1 < len(v); i += 2 {
		m, _ := v[i].(string)
		sc, _ := v[i+1].(string)
		r.subjects, r.scores = append(r.subjects, m), append(r.scores, sc)
	}
	return r, nil
}

// reexpireEndScript ends a batch of the re-expiry job (reexpire_end.lua).
var reexpireEndScript = declare("reexpire_end.lua")

// reexpireEndArgs are reexpire_end.lua's KEYS and ARGV by name.
type reexpireEndArgs struct {
	site                  string
	owner                 string
	lease, checkpointTTL  time.Duration
	end                   bool // the walk reached the end
	lastScore, lastMember string
	settle                time.Duration
	// emptied are the subjects left without data, with their scores.
	emptied, emptiedScores []string
}

func (a reexpireEndArgs) call() *call {
	id := a.site
	args := make([]any, 0, 7+2*len(a.emptied))
	args = append(args, a.owner, a.lease.Milliseconds(), a.checkpointTTL.Milliseconds(), bit(a.end), a.lastScore, a.lastMember, a.settle.Milliseconds())
	for i, m := range a.emptied {
		args = append(args, m, a.emptiedScores[i])
	}
	return &call{script: reexpireEndScript,
		keys: []string{reexpireLockKey(id), reexpireCheckpointKey(id), subjectsKey(id), reexpireKey(id), retentionKey(id)}, args: args}
}

// reexpireEnd is reexpire_end.lua's reply.
type reexpireEnd int

// Replies of reexpire_end.lua.
const (
	endHeld    reexpireEnd = iota + 1 // another owner took the job over
	endMoved                          // the checkpoint moved on
	endKept                           // the walk ended, the flag stays for another pass
	endCleared                        // the walk ended and the flag is cleared
)

// decodeReexpireEnd reads reexpire_end.lua's reply.
func decodeReexpireEnd(c *call) (reexpireEnd, error) {
	res, err := c.cmd.Text()
	if err != nil {
		return 0, translate(err)
	}
	switch res {
	case "held":
		return endHeld, nil
	case "ok":
		return endMoved, nil
	case "kept":
		return endKept, nil
	case "cleared":
		return endCleared, nil
	}
	return 0, fmt.Errorf("unexpected script answer %q", res)
}

// pendingScript reports whether the re-expiry job has work, flagging a site
// whose data may be of an older layout (pending.lua).
var pendingScript = declare("pending.lua")

// pendingArgs are pending.lua's KEYS and ARGV by name.
type pendingArgs struct {
	site    string
	version string // schemaVersion
	now     time.Time
}

func (a pendingArgs) call() *call {
	return &call{script: pendingScript, keys: []string{schemaKey(a.site), reexpireKey(a.site), subjectsKey(a.site)},
		args: []any{a.version, ms(a.now)}}
}

// PendingReexpiry reports whether a retention window of site shrank (or its
// data's layout changed) and the re-expiry job has yet to apply it to the data
// already stored.
func (s *Store) PendingReexpiry(ctx context.Context, site *visitor.Site) (bool, error) {
	c := pendingArgs{site: site.ID, version: schemaVersion, now: time.Now()}.call()
	if err := s.run(ctx, c); err != nil {
		return false, fmt.Errorf("pending re-expiry of %s: %w", site.ID, err)
	}
	pending, err := decodeLeft(c)
	if err != nil {
		return false, fmt.Errorf("pending re-expiry of %s: %w", site.ID, err)
	}
	return pending, nil
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
	start := reexpireStartArgs{site: id, owner: owner, lease: reexpireLease, checkpointTTL: LockTTL, now: now, batch: batch,
		signature: retentionSignature(r), auditWindow: days(r.Audit)}.call()
	if err := s.run(ctx, start); err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, err)
	}
	st, err := decodeReexpireStart(start)
	switch {
	case err != nil:
		return false, fmt.Errorf("re-expire %s: %w", id, err)
	case st.held:
		return false, fmt.Errorf("re-expire %s: %w", id, visitor.ErrJobHeld)
	case st.none:
		return true, nil
	}
	emptied, err := s.reexpireSubjects(ctx, site, r, now, st.subjects)
	if err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, err)
	}
	end := reexpireEndArgs{site: id, owner: owner, lease: reexpireLease, checkpointTTL: LockTTL,
		end: len(st.subjects) < batch, settle: reexpireSettle}
	if n := len(st.subjects); n > 0 {
		end.lastScore, end.lastMember = st.scores[n-1], st.subjects[n-1]
	}
	for _, i := range emptied {
		end.emptied, end.emptiedScores = append(end.emptied, st.subjects[i]), append(end.emptiedScores, st.scores[i])
	}
	c := end.call()
	if err := s.run(ctx, c); err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, err)
	}
	res, err := decodeReexpireEnd(c)
	if err != nil {
		return false, fmt.Errorf("re-expire %s: %w", id, err)
	}
	switch res {
	case endHeld:
		// The lease ran out mid-batch and another owner took the job over; the
		// batch is done again from the checkpoint, which is harmless.
		return false, fmt.Errorf("re-expire %s: %w", id, visitor.ErrJobHeld)
	case endMoved:
		return false, nil
	}
	return true, nil
}

// reexpireSubjects re-expires one batch of subjects (vkeys, "c:<chat id>" and
// "p:<keyed hash>") and returns the positions of those left without data. Each
// subject is one script on its own slot, all in one pipeline; then, in one
// pipeline each, the chats of the visitors (their own slots) and the
// blind-index entries.
func (s *Store) reexpireSubjects(ctx context.Context, site *visitor.Site, r visitor.Retention, now time.Time, subjects []string) ([]int, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	id := site.ID
	w := windowsOf(r)
	type kind int
	const (
		proofSubject kind = iota
		chatSubject
		visitorSubject
	)
	kinds := make([]kind, len(subjects))
	calls := make([]*call, len(subjects))
	for i, m := range subjects {
		if subject, ok := strings.CutPrefix(m, "p:"); ok {
			kinds[i], calls[i] = proofSubject, reexpireProofArgs{key: proofKey(id, subject), now: now, consents: w.consents}.call()
			continue
		}
		if chatID, ok := strings.CutPrefix(m, "c:"); ok {
			ck := chatKey(id, chatID)
			kinds[i], calls[i] = chatSubject, reexpireChatArgs{chat: ck, records: ck + ":r", now: now, w: w}.call()
			continue
		}
		kinds[i], calls[i] = visitorSubject, reexpireVisitorArgs{keys: keysOf(id, m), now: now, w: w}.call()
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
	visitorIdx := map[int]reexpireVisitorReply{}
	indexes := map[string][]indexUpdate{}
	for i, c := range calls {
		switch kinds[i] {
		case proofSubject:
			left, err := decodeLeft(c)
			if err != nil {
				return nil, err
			}
			if !left {
				emptied = append(emptied, i)
			}
		case chatSubject:
			res, err := decodeReexpireChat(c)
			if err != nil {
				return nil, err
			}
			if !res.left {
				emptied = append(emptied, i)
			}
			if res.blindIndex != "" {
				indexes[res.blindIndex] = append(indexes[res.blindIndex], indexUpdate{member: subjects[i], until: res.until})
			}
		case visitorSubject:
			res, err := decodeReexpireVisitor(c)
			if err != nil {
				return nil, err
			}
			if !res.left {
				emptied = append(emptied, i)
			}
			vids[i] = res.visitorID
			if len(res.indexes) > 0 {
				visitorIdx[i] = res
			}
			for _, cid := range res.chatIDs {
				chatCalls = append(chatCalls, reexpireChatArgs{chat: chatKey(id, cid), now: now, w: w}.call())
				chatOwner = append(chatOwner, i)
			}
		}
	}
	if len(chatCalls) > 0 {
		if err := s.run(ctx, chatCalls...); err != nil {
			return nil, err
		}
		for j, c := range chatCalls {
			res, err := decodeReexpireChat(c)
			if err != nil {
				return nil, err
			}
			if i := chatOwner[j]; vids[i] == "" {
				vids[i] = res.visitorID
			}
		}
	}
	for i, res := range visitorIdx {
		if vids[i] == "" {
			continue // nothing names the visitor any more: its entries lapse with their own scores
		}
		for _, k := range res.indexes {
			indexes[k] = append(indexes[k], indexUpdate{member: "v:" + vids[i], until: res.chatsUntil})
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
			idx = append(idx, reexpireIndexArgs{key: k, now: now, updates: ups}.call())
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

// Retentions returns every site's retention override: those of the sites the
// store keeps in its index of overridden sites (SaveRetention adds to it) and
// of the sites WithSites names (whose overrides may predate the index; found
// there, they are added to it).
func (s *Store) Retentions(ctx context.Context) (map[string]visitor.Retention, error) {
	indexed, err := s.c.SMembers(ctx, retentionSitesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("retention: %w", translate(err))
	}
	known := make(map[string]bool, len(indexed))
	sites := make([]string, 0, len(indexed)+len(s.sites))
	for _, id := range indexed {
		known[id] = true
		sites = append(sites, id)
	}
	for _, id := range s.sites {
		if !known[id] {
			sites = append(sites, id)
		}
	}
	out := map[string]visitor.Retention{}
	if len(sites) == 0 {
		return out, nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(sites))
	for i, id := range sites {
		cmds[i] = pipe.HMGet(ctx, retentionKey(id), "sessions", "profiles", "chats", "consents", "audit")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("retention: %w", translate(err))
	}
	var unindexed []any
	for i, cmd := range cmds {
		v := cmd.Val()
		if v[0] == nil {
			continue
		}
		n := func(i int) int { s, _ := v[i].(string); x, _ := strconv.Atoi(s); return x }
		out[sites[i]] = visitor.Retention{Sessions: n(0), Profiles: n(1), Chats: n(2), Consents: n(3), Audit: n(4)}
		if !known[sites[i]] {
			unindexed = append(unindexed, sites[i])
		}
	}
	if len(unindexed) > 0 {
		if err := s.c.SAdd(ctx, retentionSitesKey, unindexed...).Err(); err != nil {
			return nil, fmt.Errorf("retention index: %w", translate(err))
		}
	}
	return out, nil
}

// RetentionChanged returns when site's override was last saved; the zero time
// when it has none (or was saved before the time was kept).
func (s *Store) RetentionChanged(ctx context.Context, site *visitor.Site) (time.Time, error) {
	v, err := s.c.HGet(ctx, retentionKey(site.ID), "t").Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("retention changed: %w", translate(err))
	}
	return msTime(v), nil
}

// SaveRetention stores a site's override under cfg: (no TTL, no personal data)
// and, for a shorter window, asks for a re-expiry job. The site enters the
// index of overridden sites first, so that Retentions finds the override
// whatever sites the reading Store was told of.
func (s *Store) SaveRetention(ctx context.Context, site *visitor.Site, r visitor.Retention, shorter bool) error {
	// The index is on another Cluster slot than the site's keys: its own command.
	if err := s.c.SAdd(ctx, retentionSitesKey, site.ID).Err(); err != nil {
		return fmt.Errorf("save retention: %w", translate(err))
	}
	pipe := s.c.TxPipeline()
	pipe.HSet(ctx, retentionKey(site.ID), "sessions", r.Sessions, "profiles", r.Profiles, "chats", r.Chats,
		"consents", r.Consents, "audit", r.Audit, "t", time.Now().UnixMilli())
	if shorter {
		pipe.Set(ctx, reexpireKey(site.ID), time.Now().UnixMilli(), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("save retention: %w", translate(err))
	}
	return nil
}
