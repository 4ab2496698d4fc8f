-- site_index: updates the site-level indexes of one consent change on one
-- shard, in the consent's pipeline: the live set (add or remove) and a per-day
-- counter (add and, for a correction, take back another). Page views reach
-- these keys through a pod's buffer instead (flush_live.lua, flush_counts.lua).
--
-- KEYS[1] live set shard   lv:{site:NN}
-- KEYS[2] counters shard   st:{site:NN}:<day>
--
-- ARGV[1] live op: + add, - remove, empty none
-- ARGV[2] vkey
-- ARGV[3] now ms
-- ARGV[4] live TTL ms
-- ARGV[5] counter to add (empty: none)
-- ARGV[6] counter to take back (empty: none)
-- ARGV[7] counters TTL s
-- ARGV[8] most live entries kept in the shard (the least recently active go first)
-- ARGV[9] trim (1: drop what is past the window; asked on a fraction of calls)
--
-- Reply: 1.
if ARGV[1] == '+' then
  local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
  if ARGV[9] == '1' then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
    local n = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[8])
    if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1) end
  end
elseif ARGV[1] == '-' then
  redis.call('ZREM', KEYS[1], ARGV[2])
end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[6], -1)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return 1
