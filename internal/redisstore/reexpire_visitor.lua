-- reexpire_visitor: re-expires one visitor on its slot (lib_reexpire,
-- lib_session): the profile from its write time (w) with the profiles window,
-- after migrating a profile that still holds session data; each session record
-- (list and hash) from its last write (its hash's last activity) with the
-- sessions window, dropping the gone ones from the index (which names the
-- earlier sessions; the profile's sid the current one); the session index
-- from its newest session with the longer of the two windows; the chat index,
-- the blind-index list and the withdrawn set from the newest chat's start with
-- the chats window (chats past it leave the index); the consent records. The
-- consent choice keeps its expiry: the choice's validity.
--
-- KEYS[1] profile            v:{site:vkey}
-- KEYS[2] session index      v:{site:vkey}:S
-- KEYS[3] chat index         v:{site:vkey}:C
-- KEYS[4] blind-index list   v:{site:vkey}:I
-- KEYS[5] consent records    v:{site:vkey}:r
-- KEYS[6] withdrawn chats    v:{site:vkey}:M
-- Session keys are derived from KEYS[1] and share its hash tag {site:vkey}.
--
-- ARGV[1] now ms
-- ARGV[2] sessions window ms
-- ARGV[3] profiles window ms
-- ARGV[4] chats window ms
-- ARGV[5] consents window ms
--
-- Reply: {left (0|1: any of these keys left), visitor id or "", newest chat's
-- expiry ms (0: none left), n, n blind-index keys..., the chat ids of the index
-- as it was (their hashes live on their own slots)}.
local sessions, profiles, chats = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- A profile written before sessions kept their own data gives it to its
-- current session's record (or drops it, if that session is gone).
if redis.call('HEXISTS', KEYS[1], 'sl') == 1 then
  local ls = redis.call('HMGET', KEYS[1], 'w', 'ls')
  if not ls[1] and ls[2] then redis.call('HSET', KEYS[1], 'w', ls[2]) end
  migrate(KEYS[1])
end
local p = redis.call('HMGET', KEYS[1], 'vid', 'w', 'ls', 'sid')
local vid = p[1] or ''
local w = p[2] or p[3]
local kept = w and expire_at(KEYS[1], tonumber(w) + profiles)
local sids = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
-- The index names the earlier sessions; the profile's sid the current one.
local cur = p[4]
if cur and not redis.call('ZSCORE', KEYS[2], cur) then
  sids[#sids + 1] = cur
  sids[#sids + 1] = '0'
end
local last = 0
for i = 1, #sids, 2 do
  -- A session's last write is its record's last activity (the index holds its
  -- opening, or its last write as stored by earlier versions).
  local skey, mkey = session_of(KEYS[1], sids[i])
  local at = math.max(tonumber(sids[i + 1]), tonumber(record_get(skey, mkey, {'sl'})[1] or '0'))
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
