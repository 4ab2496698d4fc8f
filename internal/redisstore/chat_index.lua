-- chat_index: adds a chat to its visitor's chat index and, for a marketing
-- opt-in, the consent record (lib_record) and the marketing flag of the current
-- choice; enters the visitor's blind-index key in its list.
--
-- KEYS[1] chat index         v:{site:vkey}:C
-- KEYS[2] consent records    v:{site:vkey}:r
-- KEYS[3] choice             v:{site:vkey}:c
-- KEYS[4] blind-index list   v:{site:vkey}:I
--
-- ARGV[1] chat id
-- ARGV[2] start ms
-- ARGV[3] index expire-at ms (the newest chat's)
-- ARGV[4] record JSON (empty: none)
-- ARGV[5] record expiry ms
-- ARGV[6] now ms
-- ARGV[7] blind-index key the visitor enters (empty: none)
--
-- Reply: 1.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if ARGV[7] ~= '' then
  redis.call('SADD', KEYS[4], ARGV[7])
  redis.call('PEXPIREAT', KEYS[4], ARGV[3])
end
if ARGV[4] ~= '' then
  record(KEYS[2], ARGV[4], ARGV[5], tonumber(ARGV[6]))
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'm', '1') end
end
return 1
