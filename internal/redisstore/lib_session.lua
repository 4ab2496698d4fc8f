-- Library: a visitor's session record, shared by the scripts that read or write it.
--
-- A session record is one list of the visitor's slot, <profile>:s:<sid>, with
-- the sessions window as its TTL (from the last write). Its first item is the
-- record: "#r" and then the fields of RECORD, in that order, each after a tab
-- (session start and last activity ms, current page's start ms, closed by a
-- leave (0|1), page views, current page's URL and title, referrer, browser,
-- version, OS, mobile (0|1), country, region, city, time zone, IP). The pages
-- follow, one item each: "<start ms>\t<duration ms>\t<url>\t<title>". No field
-- holds a tab: the service sends none. The profile keeps only identity-level
-- facts (DESIGN.md invariant 5).
--
-- Sessions written before the record moved into the list have a first item
-- "#<start ms>\t<referrer>" and keep the record in a hash <profile>:s:<sid>:m
-- of the same fields; a hit on such a session rewrites it in the list and
-- deletes the hash; the readers read either.
--
-- session_of(profile, sid) names the session's list and (older) hash. Both are
-- derived from the profile key v:{site:vkey} and share its hash tag
-- {site:vkey}, so they are on the profile's Cluster slot: a script given the
-- profile in KEYS may touch them.
--
-- record_of(skey, mkey) returns the session's record as a table by field name,
-- and whether it was read from the list (false: from the older hash); an empty
-- table when the session is gone.
-- record_get(skey, mkey, names) returns the fields named, as HMGET would
-- (false for a missing one).
-- record_head(skey, mkey) reads what a hit changes of the record: its first
-- seven fields (ss to ct) by name and the rest as stored (m.tail: the
-- session's facts, from rf on), and whether it is in the list; head_item(m)
-- encodes such a table as the list's first item, record_line the same fields
-- given one by one.
-- open_session(skey, now, url, title, referrer, facts, cap) writes the list of
-- a session opening at now: its record (the first page current, facts the
-- session's fields from br on, tab-separated) and, when cap allows one, that
-- page; in one write.
--
-- ge(a, b) is a >= b for non-negative integers written without leading
-- zeros, such as the stored times: compared as strings, no number parsed.
--
-- migrate(profile) moves what a profile written before sessions had records of
-- their own still holds of its current session (device, location, IP,
-- referrer, current page, session state) into that session's hash, when the
-- session is still stored, and drops it from the profile; a no-op on a profile
-- without those fields. Callers check the marker field sl first, so the common
-- case costs nothing.
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local RECORD = {'ss', 'sl', 'ps', 'pc', 'np', 'cu', 'ct', 'rf', 'br', 'bv', 'os', 'mob', 'co', 'rg', 'ci', 'tz', 'ip'}
-- Profiles written before sessions had records held these same fields.
local LEGACY = RECORD
-- HEAD matches a record item: its first seven fields, then the rest as stored
-- (record_line writes every record item, always with all eight parts).
local HEAD = '^#r\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$'
-- fields(head, n) reads the first n fields of a record item by name, and
-- what follows them as stored (nil when the item ends first).
local function fields(head, n)
  local m, i = {}, 4
  for k = 1, n do
    local j = string.find(head, '\t', i, true)
    if not j then
      m[RECORD[k]] = string.sub(head, i)
      return m, nil
    end
    m[RECORD[k]] = string.sub(head, i, j - 1)
    i = j + 1
  end
  return m, string.sub(head, i)
end
local function record_of(skey, mkey)
  local head = redis.call('LINDEX', skey, 0)
  if head and string.sub(head, 1, 3) == '#r\t' then return (fields(head, #RECORD)), true end
  local m = {}
  local h = redis.call('HGETALL', mkey)
  for k = 1, #h, 2 do m[h[k]] = h[k + 1] end
  return m, false
end
local function record_get(skey, mkey, names)
  local m = record_of(skey, mkey)
  local out = {}
  for i, f in ipairs(names) do out[i] = m[f] or false end
  return out
end
local function record_head(skey, mkey)
  local head = redis.call('LINDEX', skey, 0)
  if head then
    -- One match reads the seven fields (a page view's most frequent read).
    local ss, sl, ps, pc, np, cu, ct, tail = string.match(head, HEAD)
    if ss then return {ss = ss, sl = sl, ps = ps, pc = pc, np = np, cu = cu, ct = ct, tail = tail}, true end
  end
  local m = record_of(skey, mkey)
  local v = {}
  for n = 8, #RECORD do v[#v + 1] = m[RECORD[n]] or '' end
  m.tail = table.concat(v, '\t')
  return m, false
end
local function record_line(ss, sl, ps, pc, np, cu, ct, tail)
  return '#r\t' .. ss .. '\t' .. sl .. '\t' .. ps .. '\t' .. pc .. '\t' .. np .. '\t' .. cu .. '\t' .. ct .. '\t' .. tail
end
local function head_item(m)
  return record_line(m.ss or '', m.sl or '', m.ps or '', m.pc or '', m.np or '', m.cu or '', m.ct or '', m.tail or '')
end
local function open_session(skey, now, url, title, referrer, facts, cap)
  local record = record_line(now, now, now, '0', '1', url, title, referrer .. '\t' .. facts)
  if cap ~= '0' then
    redis.call('RPUSH', skey, record, now .. '\t0\t' .. url .. '\t' .. title)
  else
    redis.call('RPUSH', skey, record)
  end
end
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
