-- hit: records a page view, heartbeat or leave on the visitor's slot (lib_session).
-- It is the source of truth: it refuses an erased visitor and, when asked to, a
-- visitor whose stored choice does not grant analytics for the policy given;
-- opens a session after the session timeout or past the session maximum; closes
-- the time on the current page (capped at the timeout).
--
-- KEYS[1] profile        v:{site:vkey}
-- KEYS[2] choice         v:{site:vkey}:c
-- KEYS[3] tombstone      v:{site:vkey}:t
-- KEYS[4] session index  v:{site:vkey}:S (the visitor's earlier sessions: a
--         session enters it when a later one replaces it as the profile's sid)
-- The session's list and hash (v:{site:vkey}:s:<sid>[:m]) are derived from
-- KEYS[1] and share its hash tag {site:vkey}.
--
-- ARGV[1]  op: p (page view), h (heartbeat), l (leave)
-- ARGV[2]  now ms
-- ARGV[3]  require grant (0|1): refuse unless the choice is a grant of ARGV[4] valid at now
-- ARGV[4]  policy version
-- ARGV[5]  session timeout ms
-- ARGV[6]  session maximum ms
-- ARGV[7]  sessions TTL s
-- ARGV[8]  profiles TTL s
-- ARGV[9]  new session id
-- ARGV[10] visitor id
-- ARGV[11] url        ARGV[12] title      ARGV[13] referrer
-- ARGV[14] browser    ARGV[15] version    ARGV[16] os        ARGV[17] mobile (0|1)
-- ARGV[18] country    ARGV[19] region     ARGV[20] city      ARGV[21] time zone
-- ARGV[22] ip (as the site's ip mode keeps it)
-- ARGV[23] most pages stored per session
-- ARGV[24] subject-index score this write needs (ms: when its data expires)
-- ARGV[25] score to write when the entry must grow (ahead of ARGV[24] by a slack)
-- ARGV[26] 1 when the visitor id was minted by this request (a new visitor,
--          whom the caller enters in the subject index at ARGV[25])
-- ARGV[27] TTL slack ms: a hit within a session refreshes the TTLs only when
--          they would otherwise fall short of their windows by more than this
--
-- Numbers that are only stored (times, TTLs) are written as the caller sent
-- them, never parsed and formatted again.
--
-- Reply: new | ok | no_session | no_consent | erased; new and ok with "|ix"
-- appended when the caller must raise the subject-index entry to ARGV[25].
--
-- A minted id (ARGV[26]) is at least 128 random bits the caller drew for this
-- hit: no tombstone, profile or session can exist for it, so a hit that needs
-- no grant reads nothing and opens the visitor's first session in 6 writes.
-- One that needs a grant reads the choice as any other (the caller may have
-- stored the grant with the id, as a chat start on an on-chat site does).
if ARGV[26] == '1' and ARGV[3] ~= '1' then
  if ARGV[1] ~= 'p' then return 'no_session' end
  local now, sid = ARGV[2], ARGV[9]
  local skey, mkey = session_of(KEYS[1], sid)
  if tonumber(ARGV[23]) >= 1 then
    redis.call('RPUSH', skey, '#' .. now .. '\t' .. ARGV[13], now .. '\t0\t' .. ARGV[11] .. '\t' .. ARGV[12])
  else
    redis.call('RPUSH', skey, '#' .. now .. '\t' .. ARGV[13])
  end
  redis.call('HSET', mkey, 'ss', now, 'rf', ARGV[13],
    'br', ARGV[14], 'bv', ARGV[15], 'os', ARGV[16], 'mob', ARGV[17],
    'co', ARGV[18], 'rg', ARGV[19], 'ci', ARGV[20], 'tz', ARGV[21], 'ip', ARGV[22],
    'np', '1', 'sl', now, 'ps', now, 'pc', '0', 'cu', ARGV[11], 'ct', ARGV[12])
  redis.call('HSET', KEYS[1], 'vid', ARGV[10], 'sid', sid, 'ns', '1', 'fs', now, 'w', now, 'ix', ARGV[25])
  redis.call('EXPIRE', skey, ARGV[7])
  redis.call('EXPIRE', mkey, ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
  return 'new'
end
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
local pttl = tonumber(ARGV[8])
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
-- touch writes the profile's write time and, when the hit opened a session or
-- the TTLs would otherwise fall short of their windows by more than the slack
-- (ARGV[27]), refreshes every TTL: the current session's, the session index's
-- and the profile's were all set by the same refresh, so the profile's tells.
-- The session index takes a session when a later one replaces it (the profile's
-- sid names the current one); the re-expiry job reads a session's last
-- activity from its hash.
local function touch(skey, mkey, opened)
  if tonumber(ARGV[24]) > tonumber(pr[3] or '0') then
    redis.call('HSET', KEYS[1], 'w', ARGV[2], 'ix', ARGV[25])
    ix = '|ix'
  else
    redis.call('HSET', KEYS[1], 'w', ARGV[2])
  end
  if not opened and redis.call('PTTL', KEYS[1]) >= pttl * 1000 - tonumber(ARGV[27]) then
    return
  end
  redis.call('EXPIRE', skey, ARGV[7])
  redis.call('EXPIRE', mkey, ARGV[7])
  redis.call('EXPIRE', KEYS[4], ARGV[8])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
if ARGV[1] ~= 'p' then
  if not open then return 'no_session' end
  local skey, mkey = session_of(KEYS[1], sid)
  close(skey)
  local pc = '0'
  if ARGV[1] == 'l' then pc = '1' end
  redis.call('HSET', mkey, 'sl', ARGV[2], 'pc', pc)
  touch(skey, mkey, false)
  return 'ok' .. ix
end
local skey, mkey
if open and (now - ss) <= tonumber(ARGV[6]) then
  skey, mkey = session_of(KEYS[1], sid)
  if p[4] ~= '1' then close(skey) end
else
  if open and p[4] ~= '1' then close((session_of(KEYS[1], sid))) end
  -- The session replaced enters the index, scored by its opening, while its
  -- record lasts.
  if p[1] then redis.call('ZADD', KEYS[4], p[1], sid) end
  sid = ARGV[9]
  skey, mkey = session_of(KEYS[1], sid)
  -- The session's head and first page in one write; device, location and IP
  -- are a session's: set when it opens.
  if cap >= 1 then
    redis.call('RPUSH', skey, '#' .. ARGV[2] .. '\t' .. ARGV[13], ARGV[2] .. '\t0\t' .. ARGV[11] .. '\t' .. ARGV[12])
  else
    redis.call('RPUSH', skey, '#' .. ARGV[2] .. '\t' .. ARGV[13])
  end
  redis.call('HSET', mkey, 'ss', ARGV[2], 'rf', ARGV[13],
    'br', ARGV[14], 'bv', ARGV[15], 'os', ARGV[16], 'mob', ARGV[17],
    'co', ARGV[18], 'rg', ARGV[19], 'ci', ARGV[20], 'tz', ARGV[21], 'ip', ARGV[22],
    'np', '1', 'sl', ARGV[2], 'ps', ARGV[2], 'pc', '0', 'cu', ARGV[11], 'ct', ARGV[12])
  redis.call('HSET', KEYS[1], 'vid', ARGV[10], 'sid', sid)
  redis.call('HINCRBY', KEYS[1], 'ns', 1)
  redis.call('HSETNX', KEYS[1], 'fs', ARGV[2])
  touch(skey, mkey, true)
  return 'new' .. ix
end
np = np + 1
if np <= cap then redis.call('RPUSH', skey, ARGV[2] .. '\t0\t' .. ARGV[11] .. '\t' .. ARGV[12]) end
redis.call('HSET', mkey, 'np', np, 'sl', ARGV[2], 'ps', ARGV[2], 'pc', '0', 'cu', ARGV[11], 'ct', ARGV[12])
touch(skey, mkey, false)
return 'ok' .. ix
