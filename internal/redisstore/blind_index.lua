-- blind_index: adds a subject to an e-mail's blind index: a zset of subjects
-- scored by expiry (a score only grows), trimmed on write, expiring with its
-- highest score.
--
-- KEYS[1] index  e:{site:hash}
--
-- ARGV[1] member ("v:<visitor id>" or "c:<chat id>")
-- ARGV[2] expiry ms
-- ARGV[3] now ms
--
-- Reply: 1.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
