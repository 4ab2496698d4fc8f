package redisstore

// The re-expiry job applies a retention window that shrank to the data already
// stored; its keys (lk:, ck:) are in the key schema in keys.go.

import (
	"context"
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

func reexpireLockKey(site string) string { return "lk:{" + site + "}:reexpire" }

func reexpireCheckpointKey(site string) string { return "ck:{" + site + "}:reexpire" }

// retentionSignature names a set of windows as the checkpoint and the override
// compare them: "sessions,profiles,chats,consents,audit" in days.
func retentionSignature(r visitor.Retention) string {
	return fmt.Sprintf("%d,%d,%d,%d,%d", r.Sessions, r.Profiles, r.Chats, r.Consents, r.Audit)
}

// reexpireLua defines what the subject scripts share. Numbers go to Redis
// through num, so a millisecond time never reaches a command in exponent form.
//
// expire_at(key, at) expires key at at, or deletes it when at is past; it only
// ever brings an expiry forward (PEXPIREAT LT: a longer window applies to new
// writes only). It returns false when it deleted.
//
// record_ms(json) reads the "time" of a consent record (RFC 3339, as
// encoding/json writes a time.Time) as Unix ms, or nil.
//
// rerecords(key, window) re-scores each consent record of a zset to its time +
// window when that is earlier than its score (its expiry), drops the past ones,
// expires the zset with the newest and returns that expiry (0: none left).
const reexpireLua = `
local now = tonumber(ARGV[1])
local function num(n) return string.format('%.0f', n) end
local function expire_at(key, at)
  if at <= now then
    redis.call('DEL', key)
    return false
  end
  redis.call('PEXPIREAT', key, num(at), 'LT')
  return true
end
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function record_ms(json)
  local s = string.match(json, '"time":"([^"]+)"')
  if not s then return nil end
  local y, mo, d, h, mi, se, rest = string.match(s, '^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$')
  if not y then return nil end
  local frac = 0
  local f = string.match(rest, '^%.(%d+)')
  if f then
    frac = tonumber(string.sub(f .. '00', 1, 3))
    rest = string.sub(rest, #f + 2)
  end
  local off = 0
  if rest ~= 'Z' then
    local sign, oh, om = string.match(rest, '^([+-])(%d%d):(%d%d)$')
    if not sign then return nil end
    off = (tonumber(oh) * 60 + tonumber(om)) * 60000
    if sign == '-' then off = -off end
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(se) * 1000 + frac - off
end
local function rerecords(key, window)
  local r = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local top = 0
  for i = 1, #r, 2 do
    local score = tonumber(r[i + 1])
    local at = score
    local t = record_ms(r[i])
    if t and t + window < score then at = t + window end
    if at <= now then
      redis.call('ZREM', key, r[i])
    else
      if at < score then redis.call('ZADD', key, num(at), r[i]) end
      if at > top then top = at end
    end
  end
  if top > 0 then redis.call('PEXPIREAT', key, num(top), 'LT') end
  return top
end
`

// reexpireVisitorScript re-expires one visitor on its slot: the profile from its
// write time (w) with the profiles window, after migrating a profile that still
// holds session data (sessionLua); each session record (list and hash) from its
// last write (its score in the session index) with the sessions window, dropping
// the gone ones from the index; the session index from its newest session with
// the profiles window (or the sessions window, if longer); the chat index and the blind-index list from the newest
// chat's start with the chats window (chats past it leave the index); the
// consent records. The consent choice keeps its expiry: the choice's validity.
//
// The set of chats whose marketing permission was withdrawn follows the chat
// index: it names those chats and must not outlive them.
//
// KEYS: profile, session index, chat index, blind-index list, consent records,
// marketing-withdrawn chats.
// ARGV: 1 now ms, 2 sessions ms, 3 profiles ms, 4 chats ms, 5 consents ms.
// Returns {left (0|1: any of these keys left), visitor id or "", newest chat's
// expiry ms (0: none left), n, n blind-index keys..., the chat ids of the index
// as it was (their hashes live on their own slots)}. A visitor without chats
// has no blind-index entries: its list, if any, lapses with its own expiry.
var reexpireVisitorScript = redis.NewScript(reexpireLua + sessionLua + `
local sessions, profiles, chats = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- A profile written before sessions kept their own data gives it to its
-- current session's record (or drops it, if that session is gone).
if redis.call('HEXISTS', KEYS[1], 'sl') == 1 then
  local ls = redis.call('HMGET', KEYS[1], 'w', 'ls')
  if not ls[1] and ls[2] then redis.call('HSET', KEYS[1], 'w', ls[2]) end
  migrate(KEYS[1])
end
local p = redis.call('HMGET', KEYS[1], 'vid', 'w', 'ls')
local vid = p[1] or ''
local w = p[2] or p[3]
local kept = w and expire_at(KEYS[1], tonumber(w) + profiles)
local sids = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local last = 0
for i = 1, #sids, 2 do
  local at = tonumber(sids[i + 1])
  local skey, mkey = session_of(KEYS[1], sids[i])
  expire_at(mkey, at + sessions)
  if expire_at(skey, at + sessions) then
    if at > last then last = at end
  else
    redis.call('ZREM', KEYS[2], sids[i])
  end
end
-- The index outlives no window of its own but never a list it names, so an
-- erasure (which finds sessions through it) still reaches every list.
if last > 0 then expire_at(KEYS[2], last + math.max(profiles, sessions)) end
local ids = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local newest = 0
local out = {}
for i = 1, #ids, 2 do
  local at = tonumber(ids[i + 1]) + chats
  if at <= now then
    redis.call('ZREM', KEYS[3], ids[i])
  elseif at > newest then
    newest = at
  end
  out[#out + 1] = ids[i]
end
local indexes = {}
if #ids > 0 then
  indexes = redis.call('SMEMBERS', KEYS[4])
  if newest > 0 then
    expire_at(KEYS[3], newest)
    expire_at(KEYS[4], newest)
    expire_at(KEYS[6], newest)
  else
    redis.call('DEL', KEYS[3], KEYS[4], KEYS[6])
  end
end
local top = rerecords(KEYS[5], tonumber(ARGV[5]))
if vid == '' and top > 0 then
  local first = redis.call('ZRANGE', KEYS[5], 0, 0)
  if first[1] then vid = string.match(first[1], '"visitor_id":"([^"]+)"') or '' end
end
local left = 0
if kept or last > 0 or newest > 0 or top > 0 then left = 1 end
local res = {left, vid, num(newest), #indexes}
for _, k in ipairs(indexes) do res[#res + 1] = k end
for _, id in ipairs(out) do res[#res + 1] = id end
return res
`)

// reexpireChatScript re-expires a chat from its start (t) with the chats
// window, and its queued delivery with it; with a second key, the consent
// records of a chat without identity.
//
// KEYS: chat[, consent records]. ARGV: 1 now ms, 2 chats ms, 3 consents ms.
// Returns {state (gone|deleted|kept), visitor id, blind-index key, expiry ms
// (0 unless kept), left (0|1: the chat or its records remain)}.
var reexpireChatScript = redis.NewScript(reexpireLua + `
local f = redis.call('HMGET', KEYS[1], 't', 'vid', 'ei', 'wd')
local state, at = 'gone', 0
if f[1] then
  local wd = f[4]
  if not wd or string.sub(wd, 1, #KEYS[1] + 3) ~= KEYS[1] .. ':w:' then wd = nil end
  at = tonumber(f[1]) + tonumber(ARGV[2])
  if expire_at(KEYS[1], at) then
    state = 'kept'
    if wd then expire_at(wd, at) end
  else
    state, at = 'deleted', 0
    if wd then redis.call('DEL', wd) end
  end
end
local left = 0
if KEYS[2] then
  rerecords(KEYS[2], tonumber(ARGV[3]))
  if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then left = 1 end
elseif state == 'kept' then
  left = 1
end
return {state, f[2] or '', f[3] or '', num(at), left}
`)

// reexpireProofScript re-expires the consent proof an erased chat left.
//
// KEYS: proof. ARGV: 1 now ms, 2 consents ms. Returns left (0|1: proof remains).
var reexpireProofScript = redis.NewScript(reexpireLua + `
if rerecords(KEYS[1], tonumber(ARGV[2])) > 0 then return 1 end
return 0
`)

// reexpireIndexScript brings the expiry of subjects in an e-mail's blind index
// forward (never back), drops the past ones and expires the index with its
// highest score.
//
// KEYS: index. ARGV: 1 now ms, then member, expiry ms pairs (0: the subject has
// no chat left).
var reexpireIndexScript = redis.NewScript(reexpireLua + `
for i = 2, #ARGV, 2 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if cur then
    local at = tonumber(ARGV[i + 1])
    if at <= now then
      redis.call('ZREM', KEYS[1], ARGV[i])
    elseif at < tonumber(cur) then
      redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2], 'LT') end
return 1
`)

// reexpireStartScript begins a batch: it takes or renews the lock, starts a pass
// when there is no checkpoint or the flag or the windows changed since the
// pass began (trimming the audit stream to its window and the subject index to
// the subjects whose data has not expired then, once per pass), and
// returns the next subjects after the checkpoint in score order.
//
// KEYS: lock, checkpoint, subject index, flag, audit stream.
// ARGV: 1 owner, 2 lease ms, 3 checkpoint TTL ms, 4 now ms, 5 batch, 6 windows'
// signature, 7 audit window ms.
// Returns {held} | {none} (no flag: nothing to do) | {ok, member, score, ...}.
var reexpireStartScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {'held'} end
local flag = redis.call('GET', KEYS[4])
if not flag then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'none'}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ck = redis.call('HMGET', KEYS[2], 's', 'm', 'f', 'r')
local start = 0
if ck[1] and ck[3] == flag and ck[4] == ARGV[6] then
  if ck[1] ~= '' then
    local score = redis.call('ZSCORE', KEYS[3], ck[2])
    if score and tonumber(score) == tonumber(ck[1]) then
      start = redis.call('ZRANK', KEYS[3], ck[2]) + 1
    else
      -- The last subject done was written again or dropped: resume at its old
      -- score; the few subjects sharing it are done again, which is harmless.
      start = redis.call('ZCOUNT', KEYS[3], '-inf', '(' .. ck[1])
    end
  end
else
  local t = redis.call('TIME')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 's', '', 'm', '', 'f', flag, 'r', ARGV[6],
    't0', string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  local now, window = tonumber(ARGV[4]), tonumber(ARGV[7])
  local min = now - window
  -- Subjects whose data has expired leave the index (scored by expiry).
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
  local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', KEYS[3], top[2]) end
  redis.call('XTRIM', KEYS[5], 'MINID', string.format('%.0f', min))
  local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
  if last[1] then
    local at = tonumber(string.match(last[1][1], '^(%d+)')) + window
    redis.call('PEXPIREAT', KEYS[5], string.format('%.0f', at), 'LT')
  else
    redis.call('DEL', KEYS[5])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local items = redis.call('ZRANGE', KEYS[3], start, start + tonumber(ARGV[5]) - 1, 'WITHSCORES')
table.insert(items, 1, 'ok')
return items
`)

// reexpireEndScript ends a batch: it drops from the subject index the subjects
// left without data (unless written since), then either moves the checkpoint
// and renews lock and checkpoint, or, at the end of the walk, deletes them and
// the flag — unless the flag was set again since the pass began, the pass began
// before every pod could have the new windows (reexpireSettle), or the windows
// it applied are not the override's: then the flag stays for another pass.
//
// KEYS: lock, checkpoint, subject index, flag, retention override.
// ARGV: 1 owner, 2 lease ms, 3 checkpoint TTL ms, 4 end of walk (0|1), 5 last
// score, 6 last member, 7 settle ms, then member, score pairs of emptied subjects.
// Returns held | ok | kept | cleared.
var reexpireEndScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'held' end
for i = 8, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[3], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[3], ARGV[i]) end
end
if ARGV[4] ~= '1' then
  redis.call('HSET', KEYS[2], 's', ARGV[5], 'm', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'ok'
end
local ck = redis.call('HMGET', KEYS[2], 'f', 'r', 't0')
local flag = redis.call('GET', KEYS[4])
local clear = flag and flag == ck[1] and tonumber(ck[3] or '0') >= tonumber(flag) + tonumber(ARGV[7])
if clear then
  local o = redis.call('HMGET', KEYS[5], 'sessions', 'profiles', 'chats', 'consents', 'audit')
  if o[1] then
    for i = 1, 5 do o[i] = o[i] or '' end
    if table.concat(o, ',') ~= ck[2] then clear = false end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
if clear then
  redis.call('DEL', KEYS[4])
  return 'cleared'
end
return 'kept'
`)

// schemaVersion is the version of the stored data's layout the job brings every
// subject to: 2 moved what a session observed from the profile into the session
// record (issue 17).
const schemaVersion = "2"

// pendingScript reports whether the re-expiry job has work; a site whose data
// may have been written under an older layout (schema key below schemaVersion,
// subjects stored) gets the job's flag once, so that one pass migrates every
// subject, including those that never come back. A site without data needs none.
//
// KEYS: schema key, flag, subject index. ARGV: 1 schema version, 2 now ms.
// Returns 1 when the flag is set.
var pendingScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2], 'NX')
end
return redis.call('EXISTS', KEYS[2])
`)

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
