-- Library: auditAdd(stream, now, fields) appends an entry to an audit stream at
-- now ms, or after the stream's last id when that is ahead of now (another
-- pod's clock), and returns its id. stream is the caller's KEYS entry.
local function auditAdd(stream, now, fields)
  local id = redis.pcall('XADD', stream, now .. '-*', unpack(fields))
  if type(id) == 'table' and id.err then
    local info = redis.call('XINFO', 'STREAM', stream)
    local last = now
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = string.match(info[i + 1], '^(%d+)') end
    end
    id = redis.call('XADD', stream, last .. '-*', unpack(fields))
  end
  return id
end
