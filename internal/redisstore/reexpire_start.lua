-- reexpire_start: begins a batch of the re-expiry job: takes or renews the
-- lock, starts a pass when there is no checkpoint or the flag or the windows
-- changed since the pass began (trimming the audit stream to its window and the
-- subject index to the subjects whose data has not expired, once per pass), and
-- returns the next subjects after the checkpoint in score order.
--
-- KEYS[1] lock            lk:{site}:reexpire
-- KEYS[2] checkpoint      ck:{site}:reexpire
-- KEYS[3] subject index   sj:{site}
-- KEYS[4] flag            cfg:reexpire:{site}
-- KEYS[5] audit stream    au:{site}
--
-- ARGV[1] owner
-- ARGV[2] lease ms
-- ARGV[3] checkpoint TTL ms
-- ARGV[4] now ms
-- ARGV[5] batch size
-- ARGV[6] windows' signature
-- ARGV[7] audit window ms
--
-- Reply: {held} | {none} (no flag: nothing to do) | {ok, member, score, ...}.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {'held'} end
local flag = redis.call('GET', KEYS[4])
if not flag then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'none'}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ck = redis.call('HMGET', KEYS[2], 's', 'm', 'f', 'r')
local start = 0
if ck[1] and ck[3] == flag and ck[4] == ARGV[6] then
  if ck[1] ~= '' then
    local score = redis.call('ZSCORE', KEYS[3], ck[2])
    if score and tonumber(score) == tonumber(ck[1]) then
      start = redis.call('ZRANK', KEYS[3], ck[2]) + 1
    else
      -- The last subject done was written again or dropped: resume at its old
      -- score; the few subjects sharing it are done again, which is harmless.
      start = redis.call('ZCOUNT', KEYS[3], '-inf', '(' .. ck[1])
    end
  end
else
  local t = redis.call('TIME')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 's', '', 'm', '', 'f', flag, 'r', ARGV[6],
    't0', string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  local now, window = tonumber(ARGV[4]), tonumber(ARGV[7])
  local min = now - window
  -- Subjects whose data has expired leave the index (scored by expiry).
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
  local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', KEYS[3], top[2]) end
  redis.call('XTRIM', KEYS[5], 'MINID', string.format('%.0f', min))
  local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
  if last[1] then
    local at = tonumber(string.match(last[1][1], '^(%d+)')) + window
    redis.call('PEXPIREAT', KEYS[5], string.format('%.0f', at), 'LT')
  else
    redis.call('DEL', KEYS[5])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local items = redis.call('ZRANGE', KEYS[3], start, start + tonumber(ARGV[5]) - 1, 'WITHSCORES')
table.insert(items, 1, 'ok')
return items
