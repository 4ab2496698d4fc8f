-- Library: add_unerased(zset, marks, first) adds the pairs (vkey, score) of
-- ARGV from ARGV[first] on to the sorted set zset, a score only ever growing
-- (ZADD GT, so pods flush in any order), except the vkeys whose SHA-1 the
-- erasure marks hold: an erasure also reaches what a pod has not flushed. It
-- returns how many pairs it added. marks shares zset's hash tag.
local function add_unerased(zset, marks, first)
  local erased = redis.call('EXISTS', marks) == 1
  local args = {}
  for i = first, #ARGV, 2 do
    if not erased or not redis.call('ZSCORE', marks, redis.sha1hex(ARGV[i])) then
      args[#args + 1] = ARGV[i + 1]
      args[#args + 1] = ARGV[i]
    end
  end
  for i = 1, #args, 1000 do
    redis.call('ZADD', zset, 'GT', unpack(args, i, math.min(i + 999, #args)))
  end
  return #args / 2
end
