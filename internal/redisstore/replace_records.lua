-- replace_records: replaces a records zset whole (consent records cut to
-- their proof after an erasure), expiring it with its newest record.
--
-- KEYS[1] records  pf:{site:hash}
--
-- ARGV: member, score (expiry ms) pairs.
--
-- Reply: 1.
redis.call('DEL', KEYS[1])
local top = 0
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  if tonumber(ARGV[i + 1]) > top then top = tonumber(ARGV[i + 1]) end
end
if top > 0 then redis.call('PEXPIREAT', KEYS[1], top) end
return 1
