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
local n = add_unerased(KEYS[1], KEYS[2], 2)
if n == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return n
