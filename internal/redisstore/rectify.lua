-- rectify: rewrites fields of a chat that still exists.
--
-- KEYS[1] chat  ch:{site:chat}
--
-- ARGV: field, value pairs.
--
-- Reply: 1 when the chat exists, else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
