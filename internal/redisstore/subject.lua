-- subject: enters a subject in the site's subject index, scored by the expiry
-- of its data (a score only ever grows), or removes it; trims the subjects
-- whose data has expired and expires the index with its highest score.
--
-- KEYS[1] subject index  sj:{site}
--
-- ARGV[1] member
-- ARGV[2] expiry ms (empty: remove)
-- ARGV[3] now ms
--
-- Reply: 1.
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
