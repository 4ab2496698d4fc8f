package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// migrateScript moves the session data a profile held before the session
// record into that record (migrate.lua).
var migrateScript = declare("migrate.lua", "lib_session.lua")

// migrateArgs are migrate.lua's KEYS by name; it takes no ARGV.
type migrateArgs struct{ keys visitorKeys }

func (a migrateArgs) call() *call {
	return &call{script: migrateScript, keys: []string{a.keys.profile}}
}

// rectifyScript rewrites fields of a chat that still exists (rectify.lua).
var rectifyScript = declare("rectify.lua")

// rectifyArgs are rectify.lua's KEYS and ARGV by name.
type rectifyArgs struct {
	chat   string
	fields []any // field, value pairs
}

func (a rectifyArgs) call() *call {
	return &call{script: rectifyScript, keys: []string{a.chat}, args: a.fields}
}

// replaceSetScript replaces a set whole with its absolute expiry (replace_set.lua).
var replaceSetScript = declare("replace_set.lua")

// replaceSetArgs are replace_set.lua's KEYS and ARGV by name.
type replaceSetArgs struct {
	key      string
	expireAt time.Time
	members  []string
}

func (a replaceSetArgs) call() *call {
	args := make([]any, 0, 1+len(a.members))
	args = append(args, ms(a.expireAt))
	for _, m := range a.members {
		args = append(args, m)
	}
	return &call{script: replaceSetScript, keys: []string{a.key}, args: args}
}

// eraseChatScript deletes a chat and its queued delivery (erase_chat.lua).
var eraseChatScript = declare("erase_chat.lua")

// eraseChatArgs are erase_chat.lua's KEYS by name; it takes no ARGV.
type eraseChatArgs struct{ chat string }

func (a eraseChatArgs) call() *call { return &call{script: eraseChatScript, keys: []string{a.chat}} }

// decodeEraseChat reads erase_chat.lua's reply: the key of the delivery it
// deleted, "" for none.
func decodeEraseChat(c *call) (string, error) {
	wd, err := c.cmd.Text()
	if err != nil {
		return "", translate(err)
	}
	return wd, nil
}

// replaceRecordsScript replaces a records zset whole, expiring it with its
// newest record (replace_records.lua).
var replaceRecordsScript = declare("replace_records.lua")

// replaceRecordsArgs are replace_records.lua's KEYS and ARGV by name.
type replaceRecordsArgs struct {
	key     string
	records []redis.Z // JSON members scored by expiry ms
}

func (a replaceRecordsArgs) call() *call {
	args := make([]any, 0, 2*len(a.records))
	for _, z := range a.records {
		args = append(args, z.Member, int64(z.Score))
	}
	return &call{script: replaceRecordsScript, keys: []string{a.key}, args: args}
}

// settleErasureScript writes the audit entry an erasure owes, once, and drops
// its marker (settle_erasure.lua).
var settleErasureScript = declare("settle_erasure.lua", "lib_audit_add.lua")

// settleErasureArgs are settle_erasure.lua's KEYS and ARGV by name.
type settleErasureArgs struct {
	site   string
	marker string
	entry  visitor.AuditEntry // written at entry.Time
	window time.Duration      // the audit window
}

func (a settleErasureArgs) call() *call {
	now := a.entry.Time
	return &call{script: settleErasureScript,
		keys: []string{erasuresKey(a.site), erasuresOwedKey(a.site), auditKey(a.site)},
		args: []any{a.marker, ms(now), ms(now.Add(-a.window)), a.window.Milliseconds(), a.entry.Actor, a.entry.Action, a.entry.Target}}
}

// SearchEmail returns the subjects of an e-mail's blind index, trimming the
// expired entries on the way.
func (s *Store) SearchEmail(ctx context.Context, site *visitor.Site, hash string, now time.Time) ([]string, []string, error) {
	k := emailKey(site.ID, hash)
	pipe := s.c.Pipeline()
	pipe.ZRemRangeByScore(ctx, k, "-inf", strconv.FormatInt(ms(now), 10))
	members := pipe.ZRange(ctx, k, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("search email: %w", translate(err))
	}
	visitors, chats := []string{}, []string{}
	for _, m := range members.Val() {
		if id, ok := strings.CutPrefix(m, "v:"); ok {
			visitors = append(visitors, id)
		} else if id, ok := strings.CutPrefix(m, "c:"); ok {
			chats = append(chats, id)
		}
	}
	return visitors, chats, nil
}

// VisitorData returns everything stored of a visitor: profile, sessions with
// their pages, consent choice and records, and chats (contacts sealed).
func (s *Store) VisitorData(ctx context.Context, site *visitor.Site, vkey string) (visitor.VisitorData, error) {
	k := keysOf(site.ID, vkey)
	// A profile written before sessions kept their own data is migrated first.
	if err := s.run(ctx, migrateArgs{keys: k}.call()); err != nil {
		return visitor.VisitorData{}, fmt.Errorf("visitor data: %w", err)
	}
	h, err := s.visitorHeads(ctx, k)
	if err != nil {
		return visitor.VisitorData{}, err
	}
	d := h.data()
	if err := s.visitorSessionsAndChats(ctx, site, k, h, &d); err != nil {
		return visitor.VisitorData{}, err
	}
	// The profile's w is when its TTLs were last refreshed (hit.lua's touch),
	// which a hit within a session may leave behind: the visitor was last
	// seen at the later of it and its sessions' last activity.
	if d.Profile != nil {
		for _, sd := range d.Sessions {
			if sd.LastSeen.After(d.Profile.LastSeen) {
				d.Profile.LastSeen = sd.LastSeen
			}
		}
	}
	return d, nil
}

// visitorHeads are the visitor's own keys, read in one pipeline: they hold
// the profile, choice and records, and name the sessions and chats.
type visitorHeads struct {
	profile, choice                     map[string]string
	sessions, records, chats, withdrawn []string
}

// visitorHeads reads the visitor's own keys; an erased visitor is
// visitor.ErrErased.
func (s *Store) visitorHeads(ctx context.Context, k visitorKeys) (visitorHeads, error) {
	pipe := s.c.Pipeline()
	prof := pipe.HGetAll(ctx, k.profile)
	sids := pipe.ZRange(ctx, k.sessions, 0, -1)
	choice := pipe.HGetAll(ctx, k.choice)
	records := pipe.ZRange(ctx, k.records, 0, -1)
	chats := pipe.ZRange(ctx, k.chats, 0, -1)
	withdrawn := pipe.SMembers(ctx, k.withdrawn)
	tomb := pipe.Exists(ctx, k.tombstone)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return visitorHeads{}, fmt.Errorf("visitor data: %w", translate(err))
	}
	if tomb.Val() > 0 {
		// What an erasure leaves (cut consent proof) is no one's data.
		return visitorHeads{}, fmt.Errorf("visitor data: %w", visitor.ErrErased)
	}
	return visitorHeads{profile: prof.Val(), choice: choice.Val(),
		sessions: sids.Val(), records: records.Val(), chats: chats.Val(), withdrawn: withdrawn.Val()}, nil
}

// data is the profile, choice and consent records h holds.
func (h visitorHeads) data() visitor.VisitorData {
	var d visitor.VisitorData
	if p := h.profile; len(p) > 0 {
		ns, _ := strconv.Atoi(p["ns"])
		d.Profile = &visitor.Profile{
			VisitorID: p["vid"], FirstSeen: msTime(p["fs"]), LastSeen: msTime(p["w"]), Sessions: ns, CurrentSession: p["sid"],
		}
	}
	if c := h.choice; len(c) > 0 {
		d.Choice = &visitor.Choice{Analytics: c["a"] == "1", Marketing: c["m"] == "1", PolicyVersion: c["pv"],
			Given: msTime(c["t"]), ValidUntil: msTime(c["u"])}
	}
	for _, m := range h.records {
		if r, ok := parseRecord(m); ok {
			d.Consents = append(d.Consents, r)
		}
	}
	return d
}

// visitorSessionsAndChats reads into d, in one pipeline, the sessions h names
// (the profile's current one included) and its chats.
func (s *Store) visitorSessionsAndChats(ctx context.Context, site *visitor.Site, k visitorKeys, h visitorHeads, d *visitor.VisitorData) error {
	ids := h.sessions
	if sid := h.profile["sid"]; sid != "" && !contains(ids, sid) {
		ids = append(ids, sid)
	}
	if len(ids) == 0 && len(h.chats) == 0 {
		return nil
	}
	pipe := s.c.Pipeline()
	lists := make([]*redis.StringSliceCmd, len(ids))
	metas := make([]*redis.MapStringStringCmd, len(ids))
	for i, sid := range ids {
		lists[i] = pipe.LRange(ctx, sessionKey(k.profile, sid), 0, -1)
		metas[i] = pipe.HGetAll(ctx, sessionMetaKey(k.profile, sid))
	}
	hashes := make([]*redis.MapStringStringCmd, len(h.chats))
	for i, id := range h.chats {
		hashes[i] = pipe.HGetAll(ctx, chatKey(site.ID, id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("visitor data: %w", translate(err))
	}
	for i, l := range lists {
		items, m := l.Val(), metas[i].Val()
		if len(items) == 0 && len(m) == 0 {
			continue
		}
		d.Sessions = append(d.Sessions, sessionData(ids[i], items, m))
	}
	for i, hash := range hashes {
		if m := hash.Val(); len(m) > 0 {
			c := storedChat(h.chats[i], m)
			c.Marketing = c.Marketing && !contains(h.withdrawn, c.ID)
			d.Chats = append(d.Chats, c)
		}
	}
	return nil
}

// recordFields are the fields of a session's record, in the order of its
// list's first item (lib_session.lua's RECORD).
var recordFields = [...]string{"ss", "sl", "ps", "pc", "np", "cu", "ct", "rf", "br", "bv", "os", "mob", "co", "rg", "ci", "tz", "ip"}

// recordOf reads a session's record: from its list's first item
// ("#r\t<fields>"), or from the hash that held it before (m).
func recordOf(items []string, m map[string]string) map[string]string {
	if len(items) == 0 {
		return m
	}
	head, ok := strings.CutPrefix(items[0], "#r\t")
	if !ok {
		return m
	}
	r := make(map[string]string, len(recordFields))
	for _, f := range recordFields {
		v, rest, more := strings.Cut(head, "\t")
		r[f] = v
		if !more {
			break
		}
		head = rest
	}
	return r
}

// sessionData decodes a session: its list (the record, then the pages) and,
// for a session written before the record moved into the list, its hash.
func sessionData(sid string, items []string, hash map[string]string) visitor.SessionData {
	m := recordOf(items, hash)
	np, _ := strconv.Atoi(m["np"])
	sd := visitor.SessionData{ID: sid, Pages: parseTrail(items), Start: msTime(m["ss"]), LastSeen: msTime(m["sl"]),
		Referrer: m["rf"], IP: m["ip"], CurrentURL: m["cu"], CurrentTitle: m["ct"], PageViews: np,
		CurrentStart: msTime(m["ps"]), CurrentClosed: m["pc"] == "1",
		Device:   visitor.Device{Browser: m["br"], Version: m["bv"], OS: m["os"], Mobile: m["mob"] == "1"},
		Location: visitor.Location{Country: m["co"], Region: m["rg"], City: m["ci"], TimeZone: m["tz"]},
	}
	// An older session's list starts with "#<start ms>\t<referrer>".
	if len(items) > 0 && !strings.HasPrefix(items[0], "#r\t") {
		if head, ok := strings.CutPrefix(items[0], "#"); ok {
			start, ref, _ := strings.Cut(head, "\t")
			if sd.Start.IsZero() {
				sd.Start = msTime(start)
			}
			if _, ok := m["rf"]; !ok {
				sd.Referrer = ref
			}
		}
	}
	if sd.PageViews < len(sd.Pages) {
		sd.PageViews = len(sd.Pages)
	}
	return sd
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ChatConsents returns the consent records of a chat without identity.
func (s *Store) ChatConsents(ctx context.Context, site *visitor.Site, chatID string) ([]visitor.ConsentRecord, error) {
	members, err := s.c.ZRange(ctx, chatKey(site.ID, chatID)+":r", 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("chat consents: %w", translate(err))
	}
	out := []visitor.ConsentRecord{}
	for _, m := range members {
		if r, ok := parseRecord(m); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Rectify rewrites the sealed contact fields of each chat, and moves the
// subject's blind-index entries to the new e-mail's.
func (s *Store) Rectify(ctx context.Context, site *visitor.Site, r visitor.Rectification) error {
	// The old indexes are read before the chats are rewritten: a chat without
	// identity names its index only in its own ei field, which the rewrite
	// replaces.
	var old []string
	if r.NewIndex != "" {
		var err error
		if old, err = s.oldIndexes(ctx, site, r); err != nil {
			return err
		}
	}
	var calls []*call
	for _, c := range r.Chats {
		fields := make([]any, 0, 2*len(c.Fields)+2)
		for f, v := range c.Fields {
			fields = append(fields, f, v)
		}
		if r.NewIndex != "" {
			fields = append(fields, "ei", emailKey(site.ID, r.NewIndex))
		}
		calls = append(calls, rectifyArgs{chat: chatKey(site.ID, c.ChatID), fields: fields}.call())
	}
	if err := s.run(ctx, calls...); err != nil {
		return fmt.Errorf("rectify: %w", err)
	}
	if r.NewIndex == "" {
		return nil
	}
	newKey := emailKey(site.ID, r.NewIndex)
	pipe := s.c.Pipeline()
	for _, k := range old {
		if k != newKey {
			pipe.ZRem(ctx, k, r.Member)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("rectify index: %w", translate(err))
	}
	calls = []*call{blindIndexArgs{key: newKey, member: r.Member, expiry: r.IndexUntil, now: time.Now()}.call()}
	if r.VisitorKey != "" {
		k := keysOf(site.ID, r.VisitorKey)
		calls = append(calls, replaceSetArgs{key: k.indexes, expireAt: r.IndexUntil, members: []string{newKey}}.call())
	}
	if err := s.run(ctx, calls...); err != nil {
		return fmt.Errorf("rectify index: %w", err)
	}
	return nil
}

// oldIndexes lists the blind-index keys a subject is entered in.
func (s *Store) oldIndexes(ctx context.Context, site *visitor.Site, r visitor.Rectification) ([]string, error) {
	if r.VisitorKey != "" {
		keys, err := s.c.SMembers(ctx, keysOf(site.ID, r.VisitorKey).indexes).Result()
		if err != nil {
			return nil, fmt.Errorf("rectify index: %w", translate(err))
		}
		return keys, nil
	}
	var out []string
	for _, c := range r.Chats {
		ei, err := s.c.HGet(ctx, chatKey(site.ID, c.ChatID), "ei").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("rectify index: %w", translate(err))
		}
		if ei != "" {
			out = append(out, ei)
		}
	}
	return out, nil
}

// Erase erases a subject in DESIGN.md's order: a marker for the sweeper and the
// tombstone first (from then on the visitor's token is foreign), then every
// index entry the subject recorded, then its keys, with consent records cut to
// their proof fields; last the marker goes. Every step is idempotent.
func (s *Store) Erase(ctx context.Context, site *visitor.Site, e visitor.Erasure) error {
	if e.ChatID != "" {
		return s.eraseChat(ctx, site, e)
	}
	k := keysOf(site.ID, e.VisitorKey)
	marker := erasureMarker(e)
	now := time.Now()
	pipe := s.c.Pipeline()
	if err := markErasure(ctx, pipe, site, e, marker, now); err != nil {
		return err
	}
	pipe.Set(ctx, k.tombstone, e.Subject, TombstoneTTL)
	indexes := pipe.SMembers(ctx, k.indexes)
	chats := pipe.ZRange(ctx, k.chats, 0, -1)
	records := pipe.ZRangeWithScores(ctx, k.records, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase: %w", translate(err))
	}
	// Index entries: this pod's buffer drops the visitor, and the record of
	// the erasure beside the live set and the subject index keeps every pod's
	// later flush from bringing it back.
	s.forgetBuffered(site.ID, e.VisitorKey)
	pipe = s.c.Pipeline()
	markErased(ctx, pipe, site.ID, e.VisitorKey, now)
	pipe.ZRem(ctx, liveKey(site.ID, shardOf(e.VisitorKey)), e.VisitorKey)
	pipe.ZRem(ctx, subjectsKey(site.ID), e.VisitorKey)
	for _, ik := range indexes.Val() {
		pipe.ZRem(ctx, ik, "v:"+e.VisitorID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase index entries: %w", translate(err))
	}
	// Keys: chats and queued deliveries with contact details (off the queue
	// too), behaviour, consent records cut.
	var calls []*call
	for _, id := range chats.Val() {
		calls = append(calls, eraseChatArgs{chat: chatKey(site.ID, id)}.call())
	}
	purge := purgeArgs{set: k.deliveries}.call()
	calls = append(calls, purge, forgetArgs{keys: k}.call())
	if err := s.run(ctx, calls...); err != nil {
		return fmt.Errorf("erase keys: %w", err)
	}
	purged, err := decodeKeys(purge)
	if err != nil {
		return fmt.Errorf("erase keys: %w", err)
	}
	for _, c := range calls[:len(chats.Val())] {
		wd, err := decodeEraseChat(c)
		if err != nil {
			return fmt.Errorf("erase keys: %w", err)
		}
		if wd != "" {
			purged = append(purged, wd)
		}
	}
	if err := s.dequeue(ctx, site, purged); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	// The proof leaves the key named by the visitor for one named by the keyed
	// hash, which points at no one, and stays in the subject index under that
	// hash, so that the retention job re-expires it when consents shrinks.
	if err := s.cutRecords(ctx, k.records, proofKey(site.ID, e.Subject), records.Val(), e.Subject); err != nil {
		return err
	}
	if err := s.indexProof(ctx, site, e.Subject, now); err != nil {
		return err
	}
	pipe = s.c.Pipeline()
	pipe.Del(ctx, k.choice, k.chats, k.indexes, k.withdrawn, k.owed)
	pipe.ZRem(ctx, erasuresKey(site.ID), marker)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase: %w", translate(err))
	}
	return nil
}

// cutRecords rewrites consent records to what proves compliance and points at
// no one: keyed hash, time, choices, policy version, text hash and method.
func (s *Store) cutRecords(ctx context.Context, key, dest string, records []redis.Z, subject string) error {
	if len(records) == 0 {
		return nil
	}
	proof := make([]redis.Z, 0, len(records))
	for _, z := range records {
		m, _ := z.Member.(string)
		r, ok := parseRecord(m)
		if !ok {
			continue
		}
		b, err := json.Marshal(consentRecordJSON{Subject: subject, Time: r.Time, Analytics: r.Analytics, Marketing: r.Marketing,
			PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256, Method: r.Method})
		if err != nil {
			return fmt.Errorf("cut consent records: %w", err)
		}
		proof = append(proof, redis.Z{Member: string(b), Score: z.Score})
	}
	if err := s.run(ctx, replaceRecordsArgs{key: dest, records: proof}.call()); err != nil {
		return fmt.Errorf("cut consent records: %w", err)
	}
	if dest != key {
		if err := s.c.Del(ctx, key).Err(); err != nil {
			return fmt.Errorf("cut consent records: %w", translate(err))
		}
	}
	return nil
}

// indexProof enters the consent proof an erasure left under the keyed hash
// subject in the subject index as "p:<subject>", scored by its newest record's
// expiry; without proof nothing is entered. Idempotent, for the sweeper.
func (s *Store) indexProof(ctx context.Context, site *visitor.Site, subject string, now time.Time) error {
	top, err := s.c.ZRangeWithScores(ctx, proofKey(site.ID, subject), -1, -1).Result()
	if err != nil {
		return fmt.Errorf("index consent proof: %w", translate(err))
	}
	if len(top) == 0 || top[0].Score <= float64(ms(now)) {
		return nil
	}
	if err := s.run(ctx, subjectCall(site.ID, "p:"+subject, time.UnixMilli(int64(top[0].Score)), now)); err != nil {
		return fmt.Errorf("index consent proof: %w", err)
	}
	return nil
}

func (s *Store) eraseChat(ctx context.Context, site *visitor.Site, e visitor.Erasure) error {
	ck := chatKey(site.ID, e.ChatID)
	marker := erasureMarker(e)
	pipe := s.c.Pipeline()
	if err := markErasure(ctx, pipe, site, e, marker, time.Now()); err != nil {
		return err
	}
	fields := pipe.HMGet(ctx, ck, "vk", "vid", "ei")
	records := pipe.ZRangeWithScores(ctx, ck+":r", 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase chat: %w", translate(err))
	}
	f := fields.Val()
	str := func(i int) string { s, _ := f[i].(string); return s }
	pipe = s.c.Pipeline()
	pipe.ZRem(ctx, subjectsKey(site.ID), "c:"+e.ChatID)
	if ei := str(2); ei != "" && str(0) == "" {
		pipe.ZRem(ctx, ei, "c:"+e.ChatID)
	}
	if vk := str(0); vk != "" {
		pipe.ZRem(ctx, keysOf(site.ID, vk).chats, e.ChatID)
		pipe.SRem(ctx, keysOf(site.ID, vk).withdrawn, e.ChatID)
		pipe.SRem(ctx, keysOf(site.ID, vk).owed, e.ChatID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase chat index entries: %w", translate(err))
	}
	if vk, vid, ei := str(0), str(1), str(2); vk != "" && ei != "" {
		if err := s.unlinkEmail(ctx, site, vk, vid, ei); err != nil {
			return err
		}
	}
	erase := eraseChatArgs{chat: ck}.call()
	calls := []*call{erase}
	var purge *call
	if vk := str(0); vk != "" {
		// The visitor's queued deliveries that carry this chat's contact details.
		purge = purgeChatArgs{set: keysOf(site.ID, vk).deliveries, chatID: e.ChatID}.call()
		calls = append(calls, purge)
	}
	if err := s.run(ctx, calls...); err != nil {
		return fmt.Errorf("erase chat: %w", err)
	}
	var purged []string
	if purge != nil {
		var err error
		if purged, err = decodeKeys(purge); err != nil {
			return fmt.Errorf("erase chat: %w", err)
		}
	}
	wd, err := decodeEraseChat(erase)
	if err != nil {
		return fmt.Errorf("erase chat: %w", err)
	}
	if wd != "" {
		purged = append(purged, wd)
	}
	if err := s.dequeue(ctx, site, purged); err != nil {
		return fmt.Errorf("erase chat: %w", err)
	}
	// The proof of an erased chat leaves the key named by its id for one named by
	// the keyed hash, which points at no one.
	if err := s.cutRecords(ctx, ck+":r", proofKey(site.ID, e.Subject), records.Val(), e.Subject); err != nil {
		return err
	}
	if err := s.indexProof(ctx, site, e.Subject, time.Now()); err != nil {
		return err
	}
	if err := s.c.ZRem(ctx, erasuresKey(site.ID), marker).Err(); err != nil {
		return fmt.Errorf("erase chat: %w", translate(err))
	}
	return nil
}

// erasureMarker names an erasure in the sweeper's list.
func erasureMarker(e visitor.Erasure) string {
	if e.ChatID != "" {
		return "c:" + e.ChatID + ":" + e.Subject
	}
	return "v:" + e.VisitorKey + ":" + e.VisitorID + ":" + e.Subject
}

// erasureOwedJSON is what an erasure still owes once its keys are gone: ids
// only, no contact detail.
type erasureOwedJSON struct {
	Actor   string   `json:"a"`
	ChatIDs []string `json:"c"`
}

// markErasure queues on pipe the marker of an erasure for the sweeper and,
// for one that owes its audit entry and delivery (e.Owed), what it owes.
func markErasure(ctx context.Context, pipe redis.Pipeliner, site *visitor.Site, e visitor.Erasure, marker string, now time.Time) error {
	pipe.ZAdd(ctx, erasuresKey(site.ID), redis.Z{Score: float64(ms(now)), Member: marker})
	pipe.PExpire(ctx, erasuresKey(site.ID), ErasureTTL)
	if e.Owed == nil {
		return nil
	}
	b, err := json.Marshal(erasureOwedJSON{Actor: e.Owed.Actor, ChatIDs: e.Owed.ChatIDs})
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	pipe.HSet(ctx, erasuresOwedKey(site.ID), marker, string(b))
	pipe.PExpire(ctx, erasuresOwedKey(site.ID), ErasureTTL)
	return nil
}

// SettleErasure writes the audit entry an erasure owes and drops what it owed
// (and its marker) in one script, once: when nothing is owed any more (a
// sweep and the request settling the same erasure) it writes no entry.
func (s *Store) SettleErasure(ctx context.Context, site *visitor.Site, e visitor.Erasure, entry visitor.AuditEntry, r visitor.Retention) error {
	err := s.run(ctx, settleErasureArgs{site: site.ID, marker: erasureMarker(e), entry: entry, window: days(r.Audit)}.call())
	if err != nil {
		return fmt.Errorf("settle erasure: %w", err)
	}
	return nil
}

// unlinkEmail takes a visitor out of the blind index ei, an erased chat's,
// when none of the visitor's other chats gives that e-mail: a search by it
// must not lead to the visitor once the contact details are erased.
func (s *Store) unlinkEmail(ctx context.Context, site *visitor.Site, vkey, vid, ei string) error {
	k := keysOf(site.ID, vkey)
	chats, err := s.c.ZRange(ctx, k.chats, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("erase chat index entries: %w", translate(err))
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.StringCmd, len(chats))
	for i, id := range chats {
		cmds[i] = pipe.HGet(ctx, chatKey(site.ID, id), "ei")
	}
	if len(chats) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("erase chat index entries: %w", translate(err))
		}
	}
	for _, c := range cmds {
		if c.Val() == ei {
			return nil
		}
	}
	pipe = s.c.Pipeline()
	pipe.ZRem(ctx, ei, "v:"+vid)
	pipe.SRem(ctx, k.indexes, ei)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase chat index entries: %w", translate(err))
	}
	return nil
}

// PendingErasures lists the erasures started and not finished.
func (s *Store) PendingErasures(ctx context.Context, site *visitor.Site) ([]visitor.Erasure, error) {
	pipe := s.c.Pipeline()
	markers := pipe.ZRange(ctx, erasuresKey(site.ID), 0, -1)
	owed := pipe.HGetAll(ctx, erasuresOwedKey(site.ID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pending erasures: %w", translate(err))
	}
	// An erasure whose keys are gone and that still owes is in the owed hash alone.
	all := markers.Val()
	for m := range owed.Val() {
		if !contains(all, m) {
			all = append(all, m)
		}
	}
	var out []visitor.Erasure
	for _, m := range all {
		var e visitor.Erasure
		f := strings.SplitN(m, ":", 4)
		switch {
		case len(f) == 4 && f[0] == "v":
			e = visitor.Erasure{VisitorKey: f[1], VisitorID: f[2], Subject: f[3]}
		case len(f) == 3 && f[0] == "c":
			e = visitor.Erasure{ChatID: f[1], Subject: f[2]}
		default:
			continue
		}
		if raw, ok := owed.Val()[m]; ok {
			var o erasureOwedJSON
			if err := json.Unmarshal([]byte(raw), &o); err != nil {
				return nil, fmt.Errorf("pending erasures: what %s owes: %w", site.ID, err)
			}
			e.Owed = &visitor.ErasureOwed{Actor: o.Actor, ChatIDs: o.ChatIDs}
		}
		out = append(out, e)
	}
	return out, nil
}
