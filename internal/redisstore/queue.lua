-- queue: schedules a webhook delivery on the site's queue.
--
-- KEYS[1] queue  wq:{site}
--
-- ARGV[1] delivery key
-- ARGV[2] due ms
-- ARGV[3] queue TTL ms
--
-- Reply: 1.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
