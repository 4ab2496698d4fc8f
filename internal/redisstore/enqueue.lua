-- enqueue: writes a queued delivery whole with its absolute expiry and, for
-- one kept with a visitor, enters it in the visitor's delivery set, which lasts
-- as long as its newest delivery.
--
-- KEYS[1] delivery      (v:{site:vkey}:w:<id> or wh:{site:<id>})
-- KEYS[2] delivery set  v:{site:vkey}:W (only with a visitor's delivery)
--
-- ARGV[1]  expire-at ms
-- ARGV[2…] field, value pairs
--
-- Reply: 1.
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if KEYS[2] then
  redis.call('SADD', KEYS[2], KEYS[1])
  if redis.call('PEXPIRETIME', KEYS[2]) < tonumber(ARGV[1]) then redis.call('PEXPIREAT', KEYS[2], ARGV[1]) end
end
return 1
