-- claim: claims the due deliveries of a queue, leasing each by moving its
-- score to now + lease, so another pod does not send it at the same time.
--
-- KEYS[1] queue  wq:{site}
--
-- ARGV[1] now ms
-- ARGV[2] lease ms
-- ARGV[3] most deliveries claimed
--
-- Reply: the delivery keys claimed.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), m) end
return due
