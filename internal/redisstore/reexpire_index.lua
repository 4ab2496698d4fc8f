-- reexpire_index: brings the expiry of subjects in an e-mail's blind index
-- forward (never back), drops the past ones and expires the index with its
-- highest score (lib_reexpire).
--
-- KEYS[1] index  e:{site:hash}
--
-- ARGV[1]  now ms
-- ARGV[2…] member, expiry ms pairs (0: the subject has no chat left)
--
-- Reply: 1.
for i = 2, #ARGV, 2 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if cur then
    local at = tonumber(ARGV[i + 1])
    if at <= now then
      redis.call('ZREM', KEYS[1], ARGV[i])
    elseif at < tonumber(cur) then
      redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2], 'LT') end
return 1
