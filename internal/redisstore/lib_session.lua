-- Library: a visitor's session record, shared by the scripts that read or write it.
--
-- A session record is two keys of the visitor's slot with one TTL (the sessions
-- window, from the last write): the page list <profile>:s:<sid> and the session
-- hash <profile>:s:<sid>:m. The profile keeps only identity-level facts
-- (DESIGN.md invariant 5).
--
-- session_of(profile, sid) names the session's list and hash. Both are derived
-- from the profile key v:{site:vkey} and share its hash tag {site:vkey}, so they
-- are on the profile's Cluster slot: a script given the profile in KEYS may
-- touch them.
--
-- migrate(profile) moves what a profile written before that split still holds
-- of its current session (device, location, IP, referrer, current page, session
-- state) into that session's hash, when the session is still stored, and drops
-- it from the profile; a no-op on a profile without those fields. Callers check
-- the marker field sl first, so the common case costs nothing.
local LEGACY = {'ss', 'sl', 'ps', 'pc', 'np', 'cu', 'ct', 'rf', 'br', 'bv', 'os', 'mob', 'co', 'rg', 'ci', 'tz', 'ip'}
local function session_of(profile, sid)
  local skey = profile .. ':s:' .. sid
  return skey, skey .. ':m'
end
local function migrate(profile)
  local old = redis.call('HMGET', profile, 'sid', unpack(LEGACY))
  local sid = old[1]
  if sid then
    local skey, mkey = session_of(profile, sid)
    local ttl = redis.call('PTTL', skey)
    if ttl > 0 and redis.call('EXISTS', mkey) == 0 then
      local args = {}
      for i = 2, #LEGACY + 1 do
        if old[i] then
          args[#args + 1] = LEGACY[i - 1]
          args[#args + 1] = old[i]
        end
      end
      if #args > 0 then
        redis.call('HSET', mkey, unpack(args))
        redis.call('PEXPIRE', mkey, ttl)
      end
    end
  end
  redis.call('HDEL', profile, 'ls', unpack(LEGACY))
end
