-- flush_subjects: enters the subjects a pod buffered (aggregate.go) in the
-- site's subject index, except the visitors erased since (an erasure also
-- reaches what a pod has not flushed, and must not be undone by a late
-- flush), trims the subjects whose data has expired and expires the index
-- with its highest score.
--
-- KEYS[1] subject index          sj:{site}
-- KEYS[2] the site's recent erasures  er:{site}:x (SHA-1 of erased vkeys)
--
-- ARGV[1] now ms: what the trim counts from
-- ARGV[2..] pairs: vkey, expiry ms (a score only ever grows)
--
-- Reply: the number of entries written.
local erased = redis.call('EXISTS', KEYS[2]) == 1
local args = {}
for i = 2, #ARGV, 2 do
  if not erased or not redis.call('ZSCORE', KEYS[2], redis.sha1hex(ARGV[i])) then
    args[#args + 1] = ARGV[i + 1]
    args[#args + 1] = ARGV[i]
  end
end
if #args == 0 then return 0 end
for i = 1, #args, 1000 do
  redis.call('ZADD', KEYS[1], 'GT', unpack(args, i, math.min(i + 999, #args)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return #args / 2
