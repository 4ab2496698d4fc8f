-- reexpire_end: ends a batch of the re-expiry job: drops from the subject
-- index the subjects left without data (unless written since), then either
-- moves the checkpoint and renews lock and checkpoint, or, at the end of the
-- walk, deletes them and the flag, unless the flag was set again since the pass
-- began, the pass began before every pod could have the new windows (settle),
-- or the windows it applied are not the override's: then the flag stays.
--
-- KEYS[1] lock                 lk:{site}:reexpire
-- KEYS[2] checkpoint           ck:{site}:reexpire
-- KEYS[3] subject index        sj:{site}
-- KEYS[4] flag                 cfg:reexpire:{site}
-- KEYS[5] retention override   cfg:retention:{site}
--
-- ARGV[1]  owner
-- ARGV[2]  lease ms
-- ARGV[3]  checkpoint TTL ms
-- ARGV[4]  end of walk (0|1)
-- ARGV[5]  last score
-- ARGV[6]  last member
-- ARGV[7]  settle ms
-- ARGV[8…] member, score pairs of the subjects left without data
--
-- Reply: held | ok | kept | cleared.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'held' end
for i = 8, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[3], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[3], ARGV[i]) end
end
if ARGV[4] ~= '1' then
  redis.call('HSET', KEYS[2], 's', ARGV[5], 'm', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'ok'
end
local ck = redis.call('HMGET', KEYS[2], 'f', 'r', 't0')
local flag = redis.call('GET', KEYS[4])
local clear = flag and flag == ck[1] and tonumber(ck[3] or '0') >= tonumber(flag) + tonumber(ARGV[7])
if clear then
  local o = redis.call('HMGET', KEYS[5], 'sessions', 'profiles', 'chats', 'consents', 'audit')
  if o[1] then
    for i = 1, 5 do o[i] = o[i] or '' end
    if table.concat(o, ',') ~= ck[2] then clear = false end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
if clear then
  redis.call('DEL', KEYS[4])
  return 'cleared'
end
return 'kept'
