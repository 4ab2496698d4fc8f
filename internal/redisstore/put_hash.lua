-- put_hash: writes a hash whole and its absolute expiry.
--
-- KEYS[1] the hash
--
-- ARGV[1]  expire-at ms
-- ARGV[2…] field, value pairs
--
-- Reply: 1.
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
