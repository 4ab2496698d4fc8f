-- purge_chat: deletes the deliveries of a visitor's delivery set that name a
-- chat (field c, a comma list of chat ids; one without it, written before the
-- field was, goes too: it may) and takes them out of the set.
--
-- KEYS[1] delivery set  v:{site:vkey}:W
-- The deliveries it names (v:{site:vkey}:w:<id>) share the set's hash tag
-- {site:vkey}.
--
-- ARGV[1] chat id
--
-- Reply: the keys it deleted, to leave the queue.
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
