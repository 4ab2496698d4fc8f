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
-- The session's list (v:{site:vkey}:s:<sid>) and an older session's hash
-- (the list's name and :m) are derived from KEYS[1] and share its hash tag
-- {site:vkey}.
--
-- ARGV[1]  op: p (page view), h (heartbeat), l (leave)
-- ARGV[2]  now ms
-- ARGV[3]  require grant (0|1): refuse unless the choice is a grant of ARGV[4] valid at now
-- ARGV[4]  policy version
-- ARGV[5]  session timeout ms (the most time a page is given)
-- ARGV[6]  ms: a session opened before this has run its maximum (now minus
--          the session maximum, 0 at the least)
-- ARGV[7]  sessions TTL s
-- ARGV[8]  profiles TTL s
-- ARGV[9]  new session id
-- ARGV[10] visitor id
-- ARGV[11] url        ARGV[12] title      ARGV[13] referrer
-- ARGV[14] the session's facts, as the record stores them (lib_session's
--          RECORD from br on): browser, version, OS, mobile (0|1), country,
--          region, city, time zone, ip (as the site's ip mode keeps it), each
--          after a tab but the first
-- ARGV[15] most pages stored per session
-- ARGV[16] subject-index score this write needs (ms: when its data expires)
-- ARGV[17] score to write when the entry must grow (ahead of ARGV[16] by a slack)
-- ARGV[18] ms: a hit within a session refreshes the TTLs only when they were
--          last refreshed (the profile's w) before this (now minus the TTL
--          slack), so that they never fall short of their windows by more
-- ARGV[19] ms: a session whose last activity is before this has timed out
--          (now minus the session timeout, 0 at the least)
--
-- Times are compared as the decimal strings they are stored as (lib_session's
-- ge), and numbers that are only stored (times, TTLs) are written as the
-- caller sent them: a number parsed (two strtod calls for tonumber) costs
-- about a fifth of a command.
--
-- Reply: new | ok | no_session | no_consent | erased; new and ok with "|ix"
-- appended when the caller must raise the subject-index entry to ARGV[17].
--
-- The first page view of an id minted for it, when it needs no grant, is
-- hit_new.lua's: it reads nothing.
if redis.call('EXISTS', KEYS[3]) == 1 then return 'erased' end
local c = redis.call('HMGET', KEYS[2], 'a', 'pv', 'u')
if ARGV[3] == '1' then
  if c[1] ~= '1' or c[2] ~= ARGV[4] or not c[3] or ge(ARGV[2], c[3]) then return 'no_consent' end
elseif c[1] == '0' then
  -- A refusal outlives its own validity until every identity it replaced has
  -- expired (the key's TTL): tracking never resumes under a refused identity.
  return 'no_consent'
end
local pr = redis.call('HMGET', KEYS[1], 'sid', 'sl', 'ix', 'w')
if pr[2] then migrate(KEYS[1]) end
local sid = pr[1]
-- m is the current session's record; inlist whether it is kept in the list
-- (false: in the hash of an older session, moved into the list on this write).
local m, inlist = {}, true
if sid then m, inlist = record_head(session_of(KEYS[1], sid)) end
local np = tonumber(m.np or '0')
local cap = tonumber(ARGV[15])
local open = sid and m.sl and ge(m.sl, ARGV[19])
-- close ends the time on the current page, when that page is stored (the
-- list's last item); a page past the cap was counted only.
local function close(skey)
  if np > cap then return end
  -- The page's time: now minus its start, within 0 and the timeout.
  local ps, dur = m.ps or '', ARGV[5]
  if ge(ps, ARGV[2]) then
    dur = '0'
  elseif ge(ps, ARGV[19]) then
    dur = ARGV[2] - ps
  end
  if inlist and m.cu then
    -- The list's last item is the current page, as the record holds it.
    redis.call('LSET', skey, '-1', m.ps .. '\t' .. dur .. '\t' .. m.cu .. '\t' .. m.ct)
    return
  end
  local item = redis.call('LINDEX', skey, '-1')
  if item and string.sub(item, 1, 1) ~= '#' then
    local i = string.find(item, '\t', 1, true)
    local j = string.find(item, '\t', i + 1, true)
    redis.call('LSET', skey, '-1', string.sub(item, 1, i) .. dur .. string.sub(item, j))
  end
end
-- store writes the current session's record m back as the list's first item.
-- An older session's list starts with "#<start ms>\t<referrer>", which the
-- record replaces, and its hash goes; should its list be gone, the record
-- starts one with the hash's TTL.
local function store(skey, mkey)
  local item = head_item(m)
  if inlist then
    redis.call('LSET', skey, '0', item)
    return
  end
  if redis.call('EXISTS', skey) == 1 then
    redis.call('LSET', skey, '0', item)
  else
    redis.call('RPUSH', skey, item)
    redis.call('PEXPIRE', skey, redis.call('PTTL', mkey))
  end
  redis.call('DEL', mkey)
end
local ix = ''
-- touch writes the profile when the hit opened a session (newsid: the profile
-- then names it, and its visitor id), when the subject-index score must rise
-- to ARGV[17] (about once a week), or when the TTLs were last refreshed before
-- ARGV[18]; and then refreshes every TTL and writes the time as the profile's
-- w. The current session's, the session index's and the profile's TTLs are
-- set by that one refresh, so w, the profile's write time, tells when (the
-- re-expiry job expires the profile from it; a session's last activity is its
-- record's). A hit within a session and the slack writes no more than the
-- session. The session index takes a session when a later one replaces it as
-- the profile's sid.
local function touch(skey, newsid)
  local raise = not pr[3] or not ge(pr[3], ARGV[16])
  if not newsid and not raise and pr[4] and ge(pr[4], ARGV[18]) then return end
  local f = {'w', ARGV[2]}
  if raise then
    f[3], f[4] = 'ix', ARGV[17]
    ix = '|ix'
  end
  if newsid then
    local n = #f
    f[n + 1], f[n + 2], f[n + 3], f[n + 4] = 'vid', ARGV[10], 'sid', newsid
  end
  redis.call('HSET', KEYS[1], unpack(f))
  redis.call('EXPIRE', skey, ARGV[7])
  redis.call('EXPIRE', KEYS[4], ARGV[8])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
if ARGV[1] ~= 'p' then
  if not open then return 'no_session' end
  local skey, mkey = session_of(KEYS[1], sid)
  close(skey)
  m.sl, m.pc = ARGV[2], '0'
  if ARGV[1] == 'l' then m.pc = '1' end
  store(skey, mkey)
  touch(skey)
  return 'ok' .. ix
end
if open and ge(m.ss or '', ARGV[6]) then
  local skey, mkey = session_of(KEYS[1], sid)
  if m.pc ~= '1' then close(skey) end
  np = np + 1
  m.np, m.sl, m.ps, m.pc, m.cu, m.ct = np, ARGV[2], ARGV[2], '0', ARGV[11], ARGV[12]
  store(skey, mkey)
  if np <= cap then redis.call('RPUSH', skey, ARGV[2] .. '\t0\t' .. ARGV[11] .. '\t' .. ARGV[12]) end
  touch(skey)
  return 'ok' .. ix
end
if sid then
  local skey, mkey = session_of(KEYS[1], sid)
  if open and m.pc ~= '1' then close(skey) end
  -- The session replaced enters the index, scored by its opening, while its
  -- record lasts; an older session's record moves into its list.
  if m.ss then
    redis.call('ZADD', KEYS[4], m.ss, sid)
    if not inlist then store(skey, mkey) end
  end
end
sid = ARGV[9]
local skey = session_of(KEYS[1], sid)
-- The session's record and first page in one write; device, location and IP
-- are a session's: set when it opens.
open_session(skey, ARGV[2], ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15])
redis.call('HINCRBY', KEYS[1], 'ns', '1')
redis.call('HSETNX', KEYS[1], 'fs', ARGV[2])
touch(skey, sid)
return 'new' .. ix
