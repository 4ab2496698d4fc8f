-- Library: what the re-expiry scripts share. It reads ARGV[1] as now (ms):
-- every script that includes it passes now first. Numbers go to Redis through
-- num, so a millisecond time never reaches a command in exponent form.
--
-- expire_at(key, at) expires key at at, or deletes it when at is past; it only
-- ever brings an expiry forward (PEXPIREAT LT: a longer window applies to new
-- writes only). It returns false when it deleted.
--
-- record_ms(json) reads the "time" of a consent record (RFC 3339, as
-- encoding/json writes a time.Time) as Unix ms, or nil.
--
-- rerecords(key, window) re-scores each consent record of a zset to its time +
-- window when that is earlier than its score (its expiry), drops the past ones,
-- expires the zset with the newest and returns that expiry (0: none left).
local now = tonumber(ARGV[1])
local function num(n) return string.format('%.0f', n) end
local function expire_at(key, at)
  if at <= now then
    redis.call('DEL', key)
    return false
  end
  redis.call('PEXPIREAT', key, num(at), 'LT')
  return true
end
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function record_ms(json)
  local s = string.match(json, '"time":"([^"]+)"')
  if not s then return nil end
  local y, mo, d, h, mi, se, rest = string.match(s, '^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$')
  if not y then return nil end
  local frac = 0
  local f = string.match(rest, '^%.(%d+)')
  if f then
    frac = tonumber(string.sub(f .. '00', 1, 3))
    rest = string.sub(rest, #f + 2)
  end
  local off = 0
  if rest ~= 'Z' then
    local sign, oh, om = string.match(rest, '^([+-])(%d%d):(%d%d)$')
    if not sign then return nil end
    off = (tonumber(oh) * 60 + tonumber(om)) * 60000
    if sign == '-' then off = -off end
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(se) * 1000 + frac - off
end
local function rerecords(key, window)
  local r = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local top = 0
  for i = 1, #r, 2 do
    local score = tonumber(r[i + 1])
    local at = score
    local t = record_ms(r[i])
    if t and t + window < score then at = t + window end
    if at <= now then
      redis.call('ZREM', key, r[i])
    else
      if at < score then redis.call('ZADD', key, num(at), r[i]) end
      if at > top then top = at end
    end
  end
  if top > 0 then redis.call('PEXPIREAT', key, num(top), 'LT') end
  return top
end
