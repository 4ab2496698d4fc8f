-- erase_chat: deletes a chat and its queued delivery; the caller cuts its
-- consent records first.
--
-- KEYS[1] chat  ch:{site:chat}
-- The delivery key (field wd, ch:{site:chat}:w:<id>) shares the chat's hash
-- tag {site:chat}.
--
-- ARGV: none.
-- Reply: the key of the delivery it deleted (empty: none), to leave the queue.
local wd = redis.call('HGET', KEYS[1], 'wd')
if wd and wd ~= '' then redis.call('DEL', wd) else wd = '' end
redis.call('DEL', KEYS[1])
return wd
