-- flush_live: adds one shard's live entries that a pod buffered (aggregate.go)
-- to the live set, except the visitors erased since (an erasure also reaches
-- what a pod has not flushed), and trims the shard by time and size.
--
-- KEYS[1] live set shard                lv:{site:NN}
-- KEYS[2] the shard's recent erasures   er:{site:NN}:x (SHA-1 of erased vkeys)
--
-- ARGV[1] live TTL ms (2 × the session timeout)
-- ARGV[2] most live entries kept in the shard (the least recently active go first)
-- ARGV[3] the latest activity among the entries (ms): what the trim counts back from
-- ARGV[4..] pairs: vkey, last activity ms
--
-- An entry only ever moves forward (lib_flush.lua): pods flush in any order.
-- Reply: the number of entries written.
local n = add_unerased(KEYS[1], KEYS[2], 4)
if n == 0 then return 0 end
local ttl = tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - ttl)
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) end
return n
