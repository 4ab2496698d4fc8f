-- replace_set: replaces a set whole and sets its absolute expiry.
--
-- KEYS[1] the set
--
-- ARGV[1]  expire-at ms
-- ARGV[2…] members
--
-- Reply: 1.
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
