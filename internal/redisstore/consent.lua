-- consent: writes a consent record and the choice it makes; with forget it
-- deletes the visitor's behaviour data too (lib_forget); with withdraw it
-- withdraws the marketing permission of every chat of the visitor (adds the
-- chat ids to the withdrawn set, which expires with the chat index, and to the
-- set of those whose marketing.withdrawn is owed). Refuses an erased visitor.
--
-- KEYS[1] choice            v:{site:vkey}:c
-- KEYS[2] consent records   v:{site:vkey}:r
-- KEYS[3] tombstone         v:{site:vkey}:t
-- KEYS[4] profile           v:{site:vkey}
-- KEYS[5] session index     v:{site:vkey}:S
-- KEYS[6] chat index        v:{site:vkey}:C
-- KEYS[7] withdrawn chats   v:{site:vkey}:M
-- KEYS[8] owed withdrawals  v:{site:vkey}:O
-- Session keys are derived from KEYS[4] and share its hash tag {site:vkey}.
--
-- ARGV[1]  analytics (0|1)
-- ARGV[2]  marketing (0|1)
-- ARGV[3]  policy version
-- ARGV[4]  given ms
-- ARGV[5]  valid until ms
-- ARGV[6]  record JSON
-- ARGV[7]  record expiry ms
-- ARGV[8]  now ms
-- ARGV[9]  forget (0|1)
-- ARGV[10] the choice's expire-at ms
-- ARGV[11] withdraw marketing (0|1)
-- ARGV[12] unless changed (0|1): write nothing when the choice in force (valid
--          at now) has the same answers and policy and, for a withdrawal of
--          marketing, every chat is withdrawn already
--
-- Reply: 'erased', 'same', or the ids of the chats whose marketing.withdrawn
-- is owed (those it withdrew and those an earlier withdrawal left owed).
if redis.call('EXISTS', KEYS[3]) == 1 then return 'erased' end
local now = tonumber(ARGV[8])
if ARGV[12] == '1' then
  local c = redis.call('HMGET', KEYS[1], 'a', 'm', 'pv', 'u')
  if c[1] == ARGV[1] and c[2] == ARGV[2] and c[3] == ARGV[3] and tonumber(c[4] or '0') > now then
    local pending = false
    if ARGV[11] == '1' then
      for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
        if redis.call('SISMEMBER', KEYS[7], id) == 0 then pending = true; break end
      end
    end
    if not pending then return 'same' end
  end
end
redis.call('HSET', KEYS[1], 'a', ARGV[1], 'm', ARGV[2], 'pv', ARGV[3], 't', ARGV[4], 'u', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[10])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], top[2])
if ARGV[9] == '1' then forget(KEYS[4], KEYS[5]) end
local withdrawn = {}
if ARGV[11] == '1' then
  local expiry = redis.call('PEXPIRETIME', KEYS[6])
  for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    if redis.call('SADD', KEYS[7], id) == 1 then withdrawn[#withdrawn + 1] = id end
  end
  -- The chat index always has a TTL; should it have none, the record's bounds it.
  if expiry <= 0 then expiry = ARGV[7] end
  if #withdrawn > 0 then
    redis.call('PEXPIREAT', KEYS[7], expiry)
    redis.call('SADD', KEYS[8], unpack(withdrawn))
    redis.call('PEXPIREAT', KEYS[8], expiry)
  end
end
return redis.call('SMEMBERS', KEYS[8])
