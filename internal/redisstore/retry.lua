-- retry: records a delivery's attempts, unless it was erased meanwhile.
--
-- KEYS[1] delivery  (ch:{site:chat}:w:<id>, v:{site:vkey}:w:<id> or wh:{site:<id>})
--
-- ARGV[1] attempts
--
-- Reply: 1.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'n', ARGV[1]) end
return 1
