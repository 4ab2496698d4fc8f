package redisstore

import "github.com/redis/go-redis/v9"

// sessionLua defines what the scripts that read or write a visitor's session
// share. A session record is two keys of the visitor's slot with one TTL (the
// sessions window, from the last write): the page list <profile>:s:<sid> and
// the session hash <profile>:s:<sid>:m (sessionFields). The profile keeps only
// identity-level facts (DESIGN.md invariant 5).
//
// migrate(profile) moves what a profile written before that split still holds
// of its current session (device, location, IP, referrer, current page, session
// state) into that session's hash, when the session is still stored, and drops
// it from the profile; a no-op on a profile without those fields. Callers check
// the marker field sl first, so the common case costs nothing.
//
// session_of(profile, sid) names the session's list and hash.
const sessionLua = `
local LEGACY = {'ss', 'sl', 'ps', 'pc', 'np', 'cu', 'ct', 'rf', 'br', 'bv', 'os', 'mob', 'co', 'rg', 'ci', 'tz', 'ip'}
local function session_of(profile, sid)
  local skey = profile .. ':s:' .. sid
  return skey, skey .. ':m'
end
local function migrate(profile)
  local old = redis.call('HMGET', profile, 'sid', unpack(LEGACY))
  local sid = old[1]
  if sid then
    local skey, mkey = session_of(profile, sid)
    local ttl = redis.call('PTTL', skey)
    if ttl > 0 and redis.call('EXISTS', mkey) == 0 then
      local args = {}
      for i = 2, #LEGACY + 1 do
        if old[i] then
          args[#args + 1] = LEGACY[i - 1]
          args[#args + 1] = old[i]
        end
      end
      if #args > 0 then
        redis.call('HSET', mkey, unpack(args))
        redis.call('PEXPIRE', mkey, ttl)
      end
    end
  end
  redis.call('HDEL', profile, 'ls', unpack(LEGACY))
end
`

// sessionFields are the fields of a session hash: ss (start ms), sl (last
// activity ms), ps (current page start ms), pc (1: current page closed by a
// leave), np (page views of the session, counted past MaxSessionPages), cu/ct
// (current page's URL and title, for the live view), rf (referrer), br/bv/os/mob
// (device), co/rg/ci/tz (location), ip (as the site's ip mode keeps it).
var sessionFields = []string{"ss", "sl", "ps", "pc", "np", "cu", "ct", "rf", "br", "bv", "os", "mob", "co", "rg", "ci", "tz", "ip"}

// MaxSessionPages is how many pages a session stores (DESIGN.md invariant 5):
// later page views are counted in np, not stored.
const MaxSessionPages = 500

// hitScript records a page view, heartbeat or leave on the visitor's slot. It is
// the source of truth: it refuses an erased visitor and a missing grant, opens a
// session after session_timeout of inactivity or session_max, and closes the time
// on the current page (capped at session_timeout). What the session observes
// goes to the session record; the profile gets only vid, sid, ns, fs and w.
//
// KEYS: profile, choice, tombstone, session index; the session's list and hash
// are derived from the profile and share its hash tag.
// ARGV: 1 op (p|h|l), 2 now ms, 3 require grant (0|1), 4 policy version,
// 5 session_timeout ms, 6 session_max ms, 7 sessions TTL s, 8 profiles TTL s,
// 9 new session id, 10 visitor id, 11 url, 12 title, 13 referrer, 14 browser,
// 15 version, 16 os, 17 mobile, 18 country, 19 region, 20 city, 21 time zone, 22 ip,
// 23 most pages stored per session, 24 the subject-index score this write needs
// (ms: when the data it writes expires), 25 the score to write when the entry
// must grow (ahead of 24 by a slack, so that it grows rarely), 26 1 when this
// pipeline writes the entry already (a new visitor).
// Returns: new | ok | no_session | no_consent | erased; new and ok with "|ix"
// appended when the caller must raise the visitor's subject-index entry to 25
// (the profile's ix keeps the score last written).
var hitScript = redis.NewScript(sessionLua + `
if redis.call('EXISTS', KEYS[3]) == 1 then return 'erased' end
local now = tonumber(ARGV[2])
local c = redis.call('HMGET', KEYS[2], 'a', 'pv', 'u')
if ARGV[3] == '1' then
  if c[1] ~= '1' or c[2] ~= ARGV[4] or tonumber(c[3] or '0') <= now then return 'no_consent' end
elseif c[1] == '0' then
  -- A refusal outlives its own validity until every identity it replaced has
  -- expired (the key's TTL): tracking never resumes under a refused identity.
  return 'no_consent'
end
local pr = redis.call('HMGET', KEYS[1], 'sid', 'sl', 'ix')
if pr[2] then migrate(KEYS[1]) end
local sid = pr[1]
local p = {}
if sid then
  local _, mkey = session_of(KEYS[1], sid)
  p = redis.call('HMGET', mkey, 'ss', 'sl', 'ps', 'pc', 'np')
end
local ss, sl, ps = tonumber(p[1] or '0'), tonumber(p[2] or '0'), tonumber(p[3] or '0')
local np = tonumber(p[5] or '0')
local timeout = tonumber(ARGV[5])
local cap = tonumber(ARGV[23])
local open = sid and p[2] and (now - sl) <= timeout
local sttl, pttl = tonumber(ARGV[7]), tonumber(ARGV[8])
-- close ends the time on the current page, when that page is stored (the
-- list's last item); a page past the cap was counted only.
local function close(skey)
  if np > cap then return end
  local dur = now - ps
  if dur > timeout then dur = timeout end
  if dur < 0 then dur = 0 end
  local item = redis.call('LINDEX', skey, -1)
  if item and string.sub(item, 1, 1) ~= '#' then
    local i = string.find(item, '\t', 1, true)
    local j = string.find(item, '\t', i + 1, true)
    redis.call('LSET', skey, -1, string.sub(item, 1, i) .. dur .. string.sub(item, j))
  end
end
local ix = ''
local function touch(skey, mkey)
  redis.call('HSET', KEYS[1], 'w', now)
  if ARGV[26] == '1' then
    redis.call('HSET', KEYS[1], 'ix', ARGV[25])
  elseif tonumber(ARGV[24]) > tonumber(pr[3] or '0') then
    redis.call('HSET', KEYS[1], 'ix', ARGV[25])
    ix = '|ix'
  end
  redis.call('EXPIRE', skey, sttl)
  redis.call('EXPIRE', mkey, sttl)
  redis.call('ZADD', KEYS[4], now, sid)
  redis.call('EXPIRE', KEYS[4], pttl)
  redis.call('EXPIRE', KEYS[1], pttl)
end
if ARGV[1] ~= 'p' then
  if not open then return 'no_session' end
  local skey, mkey = session_of(KEYS[1], sid)
  close(skey)
  local pc = '0'
  if ARGV[1] == 'l' then pc = '1' end
  redis.call('HSET', mkey, 'sl', now, 'pc', pc)
  touch(skey, mkey)
  return 'ok' .. ix
end
local result = 'ok'
local skey, mkey
if open and (now - ss) <= tonumber(ARGV[6]) then
  skey, mkey = session_of(KEYS[1], sid)
  if p[4] ~= '1' then close(skey) end
else
  if open and p[4] ~= '1' then close((session_of(KEYS[1], sid))) end
  result = 'new'
  sid = ARGV[9]
  skey, mkey = session_of(KEYS[1], sid)
  np = 0
  redis.call('RPUSH', skey, '#' .. now .. '\t' .. ARGV[13])
  -- Device, location and IP are a session's: set when it opens.
  redis.call('HSET', mkey, 'ss', now, 'rf', ARGV[13],
    'br', ARGV[14], 'bv', ARGV[15], 'os', ARGV[16], 'mob', ARGV[17],
    'co', ARGV[18], 'rg', ARGV[19], 'ci', ARGV[20], 'tz', ARGV[21], 'ip', ARGV[22])
  redis.call('HSET', KEYS[1], 'vid', ARGV[10], 'sid', sid)
  redis.call('HINCRBY', KEYS[1], 'ns', 1)
  redis.call('HSETNX', KEYS[1], 'fs', now)
end
np = np + 1
if np <= cap then redis.call('RPUSH', skey, now .. '\t0\t' .. ARGV[11] .. '\t' .. ARGV[12]) end
redis.call('HSET', mkey, 'np', np, 'sl', now, 'ps', now, 'pc', '0', 'cu', ARGV[11], 'ct', ARGV[12])
touch(skey, mkey)
return result .. ix
`)

// siteScript updates the site-level indexes of one hit in one command on one
// shard: the live set (add, or remove) and a per-day counter (add and, for a
// correction, take back another).
//
// KEYS: live set shard, counters shard.
// ARGV: 1 live op (+ add, - remove, empty none), 2 vkey, 3 now ms, 4 live TTL ms,
// 5 counter to add (empty for none), 6 counter to take back (empty for none),
// 7 counters TTL s, 8 most live entries kept in the shard (the least recently
// active go first), 9 trim (1: drop what is past the window; the caller asks on
// a fraction of calls, since readers filter by time anyway).
var siteScript = redis.NewScript(`
if ARGV[1] == '+' then
  local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
  if ARGV[9] == '1' then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
    local n = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[8])
    if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1) end
  end
elseif ARGV[1] == '-' then
  redis.call('ZREM', KEYS[1], ARGV[2])
end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[6], -1)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return 1
`)

// forgetScript deletes a visitor's behaviour data: every session, the session
// index and the profile. Consent records and the choice stay as proof.
//
// KEYS: profile, session index.
var forgetScript = redis.NewScript(forgetLua + `
forget(KEYS[1], KEYS[2])
return 1
`)

// forgetLua defines forget(profile, sessionIndex) for the scripts that delete
// behaviour data.
const forgetLua = `
local function forget(profile, index)
  local sids = redis.call('ZRANGE', index, 0, -1)
  for _, sid in ipairs(sids) do redis.call('DEL', profile .. ':s:' .. sid, profile .. ':s:' .. sid .. ':m') end
  local cur = redis.call('HGET', profile, 'sid')
  if cur then redis.call('DEL', profile .. ':s:' .. cur, profile .. ':s:' .. cur .. ':m') end
  redis.call('DEL', profile, index)
end
`

// consentScript writes a consent record and the choice it makes; with forget it
// deletes the visitor's behaviour data too; with withdraw it withdraws the
// marketing permission of every chat of the visitor (adds the chat ids to the
// withdrawn set, which expires with the chat index, and to the set of those
// whose marketing.withdrawn is owed). Refuses an erased visitor.
//
// KEYS: choice, records, tombstone, profile, session index, chat index,
// marketing-withdrawn set, owed marketing.withdrawn set.
// ARGV: 1 analytics (0|1), 2 marketing (0|1), 3 policy version, 4 given ms,
// 5 valid until ms, 6 record JSON, 7 record expiry ms, 8 now ms, 9 forget (0|1),
// 10 the choice's expire-at ms (a refusal's lasts as long as the identity it
// replaced could), 11 withdraw marketing (0|1), 12 unless changed (0|1): write
// nothing when the choice in force (valid at now) has the same answers and
// policy and, for a withdrawal of marketing, every chat is withdrawn already.
// Returns: 'erased', 'same', or the ids of the chats whose marketing.withdrawn
// is owed: those it withdrew, and those an earlier withdrawal left owed.
var consentScript = redis.NewScript(forgetLua + `
if redis.call('EXISTS', KEYS[3]) == 1 then return 'erased' end
local now = tonumber(ARGV[8])
if ARGV[12] == '1' then
  local c = redis.call('HMGET', KEYS[1], 'a', 'm', 'pv', 'u')
  if c[1] == ARGV[1] and c[2] == ARGV[2] and c[3] == ARGV[3] and tonumber(c[4] or '0') > now then
    local pending = false
    if ARGV[11] == '1' then
      for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
        if redis.call('SISMEMBER', KEYS[7], id) == 0 then pending = true; break end
      end
    end
    if not pending then return 'same' end
  end
end
redis.call('HSET', KEYS[1], 'a', ARGV[1], 'm', ARGV[2], 'pv', ARGV[3], 't', ARGV[4], 'u', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[10])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], top[2])
if ARGV[9] == '1' then forget(KEYS[4], KEYS[5]) end
local withdrawn = {}
if ARGV[11] == '1' then
  local expiry = redis.call('PEXPIRETIME', KEYS[6])
  for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    if redis.call('SADD', KEYS[7], id) == 1 then withdrawn[#withdrawn + 1] = id end
  end
  -- The chat index always has a TTL; should it have none, the record's bounds it.
  if expiry <= 0 then expiry = ARGV[7] end
  if #withdrawn > 0 then
    redis.call('PEXPIREAT', KEYS[7], expiry)
    redis.call('SADD', KEYS[8], unpack(withdrawn))
    redis.call('PEXPIREAT', KEYS[8], expiry)
  end
end
return redis.call('SMEMBERS', KEYS[8])
`)

var allScripts = []*redis.Script{hitScript, siteScript, forgetScript, consentScript, bindChatScript, liveScript, migrateScript, putHashScript, chatIndexScript, recordScript, blindIndexScript, queueScript, auditScript, claimScript, subjectScript, eraseChatScript, enqueueScript, purgeScript, purgeChatScript, replaceRecordsScript, rectifyScript, replaceSetScript,
	reexpireVisitorScript, reexpireChatScript, reexpireIndexScript, reexpireStartScript, reexpireEndScript, pendingScript, reexpireProofScript, settleErasureScript}

// recordLua defines record(key, json, expiry, now): adds a consent record to a
// zset scored by its expiry, trims the expired ones and expires the key with
// the newest.
const recordLua = `
local function record(key, json, expiry, now)
  redis.call('ZADD', key, expiry, json)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', key, top[2]) end
end
`

// bindChatScript reads what a chat of the visitor binds to: the open session,
// the device, location and referrer of the current session's record, and the
// earlier chats.
//
// KEYS: profile, tombstone, chat index (the session's hash shares the hash tag).
// ARGV: 1 now ms, 2 session_timeout ms.
// Returns: 'erased', or {sid (empty when none is open), br, bv, os, mob, co, rg, ci, tz, rf, chat ids...}.
var bindChatScript = redis.NewScript(sessionLua + `
if redis.call('EXISTS', KEYS[2]) == 1 then return 'erased' end
local pr = redis.call('HMGET', KEYS[1], 'sid', 'sl')
if pr[2] then migrate(KEYS[1]) end
local out = {''}
if pr[1] then
  local _, mkey = session_of(KEYS[1], pr[1])
  local p = redis.call('HMGET', mkey, 'sl', 'br', 'bv', 'os', 'mob', 'co', 'rg', 'ci', 'tz', 'rf')
  if p[1] and tonumber(ARGV[1]) - tonumber(p[1]) <= tonumber(ARGV[2]) then out[1] = pr[1] end
  for i = 2, 10 do out[#out + 1] = p[i] or '' end
else
  for i = 2, 10 do out[#out + 1] = '' end
end
local chats = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, c in ipairs(chats) do out[#out + 1] = c end
return out
`)

// liveScript reads a live visitor's current session: the profile's current
// session id and that session's hash.
//
// KEYS: profile (the session's hash shares the hash tag).
// Returns: {} when there is no current session, else {sid, then the values of
// ss, sl, np, cu, ct, co, rg, ci, tz, br, bv, os, mob, rf (empty when absent)}.
var liveScript = redis.NewScript(sessionLua + `
local pr = redis.call('HMGET', KEYS[1], 'sid', 'sl')
if pr[2] then migrate(KEYS[1]) end
if not pr[1] then return {} end
local _, mkey = session_of(KEYS[1], pr[1])
local m = redis.call('HMGET', mkey, 'ss', 'sl', 'np', 'cu', 'ct', 'co', 'rg', 'ci', 'tz', 'br', 'bv', 'os', 'mob', 'rf')
if not m[2] then return {} end
local out = {pr[1]}
for i = 1, #m do out[#out + 1] = m[i] or '' end
return out
`)

// migrateScript moves what a profile written before the session record held
// the session's data into that record (sessionLua's migrate).
//
// KEYS: profile.
var migrateScript = redis.NewScript(sessionLua + `
if redis.call('HEXISTS', KEYS[1], 'sl') == 1 then migrate(KEYS[1]) end
return 1
`)

// putHashScript writes a hash whole and its absolute expiry.
//
// KEYS: hash. ARGV: 1 expire-at ms, then field, value pairs.
var putHashScript = redis.NewScript(`
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`)

// chatIndexScript adds a chat to its visitor's chat index and, for a marketing
// opt-in, the consent record and the marketing flag of the current choice.
//
// KEYS: chat index, consent records, choice, blind-index list.
// ARGV: 1 chat id, 2 start ms, 3 index expire-at ms (the newest chat's), 4 record
// JSON (empty for none), 5 record expiry ms, 6 now ms, 7 blind-index key the
// visitor enters (empty for none).
var chatIndexScript = redis.NewScript(recordLua + `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if ARGV[7] ~= '' then
  redis.call('SADD', KEYS[4], ARGV[7])
  redis.call('PEXPIREAT', KEYS[4], ARGV[3])
end
if ARGV[4] ~= '' then
  record(KEYS[2], ARGV[4], ARGV[5], tonumber(ARGV[6]))
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'm', '1') end
end
return 1
`)

// recordScript adds a consent record to a subject's records.
//
// KEYS: records. ARGV: 1 JSON, 2 expiry ms, 3 now ms.
var recordScript = redis.NewScript(recordLua + `
record(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
return 1
`)

// blindIndexScript adds a subject to an e-mail's blind index: a zset of subject
// ids scored by expiry, trimmed on write, expiring with its highest score.
//
// KEYS: index. ARGV: 1 member, 2 expiry ms, 3 now ms.
var blindIndexScript = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
`)

// queueScript schedules a webhook delivery on the site's queue.
//
// KEYS: queue. ARGV: 1 delivery key, 2 due ms, 3 queue TTL ms.
var queueScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// claimScript claims the due deliveries of a queue: it leases each by moving its
// score to now + lease, so another pod does not send it at the same time.
//
// KEYS: queue. ARGV: 1 now ms, 2 lease ms, 3 max count.
var claimScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), m) end
return due
`)

// retryScript records a delivery's attempts, unless it was erased meanwhile.
//
// KEYS: delivery. ARGV: 1 attempts.
var retryScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'n', ARGV[1]) end
return 1
`)

// subjectScript enters a subject in the site's subject index, scored by the
// expiry of its data (a score only ever grows), or removes it; it trims the
// subjects whose data has expired and expires the index with its highest score.
//
// KEYS: subject index. ARGV: 1 member, 2 expiry ms (empty: remove), 3 now ms.
var subjectScript = redis.NewScript(`
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
`)

// eraseChatScript deletes a chat and its queued delivery; the caller cuts its
// consent records first. The delivery key (wd) shares the chat's hash tag.
//
// KEYS: chat. Returns the key of the delivery it deleted (empty for none), to
// leave the queue.
var eraseChatScript = redis.NewScript(`
local wd = redis.call('HGET', KEYS[1], 'wd')
if wd and wd ~= '' then redis.call('DEL', wd) else wd = '' end
redis.call('DEL', KEYS[1])
return wd
`)

// enqueueScript writes a queued delivery whole with its absolute expiry and,
// for one kept with a visitor, enters it in the visitor's delivery set (same
// hash tag), which lasts as long as its newest delivery.
//
// KEYS: delivery[, delivery set]. ARGV: 1 expire-at ms, then field, value pairs.
var enqueueScript = redis.NewScript(`
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if KEYS[2] then
  redis.call('SADD', KEYS[2], KEYS[1])
  if redis.call('PEXPIRETIME', KEYS[2]) < tonumber(ARGV[1]) then redis.call('PEXPIREAT', KEYS[2], ARGV[1]) end
end
return 1
`)

// purgeScript deletes the deliveries a visitor's delivery set names (keys of the
// set's hash tag) and the set.
//
// KEYS: delivery set. Returns the keys it named, to leave the queue.
var purgeScript = redis.NewScript(`
local keys = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(keys) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return keys
`)

// purgeChatScript deletes the deliveries of a visitor's delivery set that name
// a chat (field c, a comma list of chat ids; one without it, written before
// the field was, goes too: it may) and takes them out of the set.
//
// KEYS: delivery set. ARGV: 1 chat id. Returns the keys it deleted, to leave the queue.
var purgeChatScript = redis.NewScript(`
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local c = redis.call('HGET', k, 'c')
  if redis.call('EXISTS', k) == 0 then
    redis.call('SREM', KEYS[1], k)
  elseif not c or string.find(',' .. c .. ',', ',' .. ARGV[1] .. ',', 1, true) then
    redis.call('DEL', k)
    redis.call('SREM', KEYS[1], k)
    out[#out + 1] = k
  end
end
return out
`)

// replaceRecordsScript replaces a records zset whole (consent records cut to
// their proof after an erasure), expiring it with its newest record.
//
// KEYS: records. ARGV: member, score pairs.
var replaceRecordsScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
local top = 0
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  if tonumber(ARGV[i + 1]) > top then top = tonumber(ARGV[i + 1]) end
end
if top > 0 then redis.call('PEXPIREAT', KEYS[1], top) end
return 1
`)

// rectifyScript rewrites fields of a chat that still exists.
//
// KEYS: chat. ARGV: field, value pairs.
var rectifyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

// replaceSetScript replaces a set whole and sets its absolute expiry.
//
// KEYS: set. ARGV: 1 expire-at ms, then members.
var replaceSetScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`)
