-- audit: appends entries to a site's audit stream (lib_audit_add), folds
-- repeated reads into their entry, trims the stream by MINID to the audit
-- window and keeps its TTL at the window.
--
-- An entry's stream id is the time of its last write ("<ms>-<seq>", never
-- before the stream's last id), so MINID trims by the service's clock. Its
-- fields: t (first time ms), l (last time ms), n (count), actor, action, target
-- and, for a retention change, ro and rn (old and new windows).
--
-- Folding: each entry has a fold key naming the entry id written last for its
-- actor, action and target. When fold > 0 and that entry is still in the stream
-- and was first written less than fold before now, it is replaced by one at the
-- top of the stream with the same t, l = now and n + 1. Otherwise a new entry is
-- written with n = 1 and the fold key points at it for fold ms.
--
-- KEYS[1]    stream                     au:{site}
-- KEYS[1+i]  fold key of entry i        au:{site}:f:<actor>|<action>|<target>
--
-- ARGV[1] now ms
-- ARGV[2] MINID ms (now - audit window)
-- ARGV[3] stream TTL ms (the audit window)
-- ARGV[4] fold ms (0: never fold)
-- then per entry, 5 values: actor, action, target, old windows, new windows
-- ("" for none)
--
-- Reply: the ids written, one per entry.
local now, fold = tonumber(ARGV[1]), tonumber(ARGV[4])
local function add(fields) return auditAdd(KEYS[1], ARGV[1], fields) end
local ids = {}
local n = (#ARGV - 4) / 5
for i = 1, n do
  local b = 4 + (i - 1) * 5
  local fk = KEYS[i + 1]
  local first, count = ARGV[1], 1
  if fold > 0 then
    local prev = redis.call('GET', fk)
    if prev then
      local e = redis.call('XRANGE', KEYS[1], prev, prev)
      if e[1] then
        local t, c
        local f = e[1][2]
        for j = 1, #f, 2 do
          if f[j] == 't' then t = f[j + 1] elseif f[j] == 'n' then c = f[j + 1] end
        end
        local age = now - tonumber(t or '0')
        if t and age >= 0 and age < fold then
          first, count = t, tonumber(c or '1') + 1
          redis.call('XDEL', KEYS[1], prev)
        end
      end
    end
  end
  local fields = {'t', first, 'l', ARGV[1], 'n', string.format('%d', count),
    'actor', ARGV[b + 1], 'action', ARGV[b + 2], 'target', ARGV[b + 3]}
  if ARGV[b + 4] ~= '' then
    fields[#fields + 1] = 'ro'; fields[#fields + 1] = ARGV[b + 4]
    fields[#fields + 1] = 'rn'; fields[#fields + 1] = ARGV[b + 5]
  end
  local id = add(fields)
  ids[#ids + 1] = id
  if fold > 0 then
    if count == 1 then
      redis.call('SET', fk, id, 'PX', ARGV[4])
    else
      redis.call('SET', fk, id, 'KEEPTTL')
    end
  end
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return ids
