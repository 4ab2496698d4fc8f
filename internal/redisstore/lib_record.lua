-- Library: record(key, json, expiry, now) adds a consent record to a zset
-- scored by its expiry (ms), trims the expired ones and expires the key with
-- the newest. key is the caller's KEYS entry.
local function record(key, json, expiry, now)
  redis.call('ZADD', key, expiry, json)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', key, top[2]) end
end
