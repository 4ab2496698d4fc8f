-- flush_counts: adds a batch of per-day counts that a pod buffered (aggregate.go)
-- to one shard of the site's counters, once: the batch's receipt makes a retry
-- of a batch whose answer was lost add nothing.
--
-- KEYS[1]   the batch's receipt      fl:{site:NN}:<pod>:<batch>
-- KEYS[2..] counters shard per day   st:{site:NN}:<day>
--
-- ARGV[1] counters TTL s
-- ARGV[2] receipt TTL ms
-- ARGV[3] 1: keep a receipt in KEYS[1] (a batch that may be retried); 0: none
-- ARGV[4..] for each counters key in KEYS order: the number n of its counters,
--           then n pairs: counter name, amount
--
-- Reply: 1 when the batch was added, 0 when it had been already. A script
-- that fails keeps what it wrote, so every check comes before the first write:
-- a failed batch wrote nothing and is retried whole.
local receipt = ARGV[3] == '1'
if receipt and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for k = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'hash' and t ~= 'none' then return redis.error_reply('WRONGTYPE counters key ' .. KEYS[k]) end
end
if receipt then redis.call('SET', KEYS[1], '1', 'PX', ARGV[2]) end
local a = 4
for k = 2, #KEYS do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('EXPIRE', KEYS[k], ARGV[1])
end
return 1
