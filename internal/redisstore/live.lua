-- live: reads a live visitor's current session (lib_session): the profile's
-- current session id and that session's record.
--
-- KEYS[1] profile  v:{site:vkey}
-- The session's keys are derived from KEYS[1] and share its hash tag {site:vkey}.
--
-- ARGV: none.
-- Reply: {} when there is no current session, else {sid, ss, sl, np, cu, ct,
-- co, rg, ci, tz, br, bv, os, mob, rf} (empty strings when absent).
local pr = redis.call('HMGET', KEYS[1], 'sid', 'sl')
if pr[2] then migrate(KEYS[1]) end
if not pr[1] then return {} end
local skey, mkey = session_of(KEYS[1], pr[1])
local m = record_get(skey, mkey, {'ss', 'sl', 'np', 'cu', 'ct', 'co', 'rg', 'ci', 'tz', 'br', 'bv', 'os', 'mob', 'rf'})
if not m[2] then return {} end
local out = {pr[1]}
for i = 1, #m do out[#out + 1] = m[i] or '' end
return out
