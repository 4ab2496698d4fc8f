-- purge: deletes the deliveries a visitor's delivery set names and the set.
--
-- KEYS[1] delivery set  v:{site:vkey}:W
-- The deliveries it names (v:{site:vkey}:w:<id>) share the set's hash tag
-- {site:vkey}.
--
-- ARGV: none.
-- Reply: the keys it named, to leave the queue.
local keys = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(keys) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return keys
