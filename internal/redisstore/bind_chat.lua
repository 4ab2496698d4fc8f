-- bind_chat: reads what a chat of the visitor binds to (lib_session): the open
-- session, the device, location and referrer of the current session's record,
-- and the earlier chats.
--
-- KEYS[1] profile     v:{site:vkey}
-- KEYS[2] tombstone   v:{site:vkey}:t
-- KEYS[3] chat index  v:{site:vkey}:C
-- The session's keys are derived from KEYS[1] and share its hash tag {site:vkey}.
--
-- ARGV[1] now ms
-- ARGV[2] session timeout ms
--
-- Reply: 'erased', or {sid (empty when none is open), br, bv, os, mob, co, rg,
-- ci, tz, rf, chat ids...}.
if redis.call('EXISTS', KEYS[2]) == 1 then return 'erased' end
local pr = redis.call('HMGET', KEYS[1], 'sid', 'sl')
if pr[2] then migrate(KEYS[1]) end
local out = {''}
local p = {}
if pr[1] then
  local skey, mkey = session_of(KEYS[1], pr[1])
  p = record_get(skey, mkey, {'sl', 'br', 'bv', 'os', 'mob', 'co', 'rg', 'ci', 'tz', 'rf'})
  if p[1] and tonumber(ARGV[1]) - tonumber(p[1]) <= tonumber(ARGV[2]) then out[1] = pr[1] end
end
-- A chat binds what the session current at its start observed, or nothing
-- (DESIGN.md invariant 4): an ended session's device, location and referrer
-- stay out of the binding.
for i = 2, 10 do
  if out[1] ~= '' then out[#out + 1] = p[i] or '' else out[#out + 1] = '' end
end
local chats = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, c in ipairs(chats) do out[#out + 1] = c end
return out
