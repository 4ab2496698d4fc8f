-- Library: forget(profile, index) deletes a visitor's behaviour data: every
-- session named by the session index or the profile's sid, the index and the
-- profile. The session keys are derived from the profile and share its hash
-- tag {site:vkey} (lib_session.lua).
local function forget(profile, index)
  local sids = redis.call('ZRANGE', index, 0, -1)
  for _, sid in ipairs(sids) do redis.call('DEL', profile .. ':s:' .. sid, profile .. ':s:' .. sid .. ':m') end
  local cur = redis.call('HGET', profile, 'sid')
  if cur then redis.call('DEL', profile .. ':s:' .. cur, profile .. ':s:' .. cur .. ':m') end
  redis.call('DEL', profile, index)
end
