-- stream_hold: takes or renews a place among an API key's open live streams.
-- The key expires with its last lease.
--
-- KEYS[1] open streams  ls:{site}:<key id>, stream ids scored by lease end (ms)
--
-- ARGV[1] now ms: leases that ended before are dropped (a pod that died)
-- ARGV[2] the end of this stream's lease (ms)
-- ARGV[3] the stream's id
-- ARGV[4] how many streams the key may hold
--
-- Reply: 1 when the stream holds its place, 0 when the others hold them all.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], top[2])
return 1
