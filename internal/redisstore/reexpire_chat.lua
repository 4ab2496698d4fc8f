-- reexpire_chat: re-expires a chat from its start (t) with the chats window,
-- and its queued delivery with it; with a second key, the consent records of a
-- chat without identity (lib_reexpire).
--
-- KEYS[1] chat             ch:{site:chat}
-- KEYS[2] consent records  ch:{site:chat}:r (only for a chat without identity)
-- The delivery (field wd) is touched only when it is KEYS[1] .. ':w:<id>',
-- which shares the chat's hash tag {site:chat}.
--
-- ARGV[1] now ms
-- ARGV[2] chats window ms
-- ARGV[3] consents window ms
--
-- Reply: {state (gone|deleted|kept), visitor id, blind-index key, expiry ms
-- (0 unless kept), left (0|1: the chat or its records remain)}.
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
