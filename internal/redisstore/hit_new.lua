-- hit_new: records the first page view of a visitor whose id was minted for it
-- (lib_session), when it needs no grant. The id is at least 128 random bits
-- the caller drew for this hit: no tombstone, choice, profile or session can
-- exist for it, so the script reads nothing and opens the visitor's first
-- session in 4 writes, as hit.lua would for a visitor without any data.
--
-- KEYS[1] profile  v:{site:vkey}
-- The session's list (v:{site:vkey}:s:<sid>) is derived from KEYS[1] and
-- shares its hash tag {site:vkey}.
--
-- ARGV[1]  now ms
-- ARGV[2]  new session id
-- ARGV[3]  visitor id
-- ARGV[4]  url        ARGV[5] title      ARGV[6] referrer
-- ARGV[7]  the session's facts (hit.lua's ARGV[14])
-- ARGV[8]  sessions TTL s
-- ARGV[9]  profiles TTL s
-- ARGV[10] most pages stored per session
-- ARGV[11] the visitor's subject-index score (ms), at which the caller enters
--          it in the index
--
-- Reply: new
local skey = session_of(KEYS[1], ARGV[2])
open_session(skey, ARGV[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[10])
redis.call('HSET', KEYS[1], 'vid', ARGV[3], 'sid', ARGV[2], 'ns', '1', 'fs', ARGV[1], 'w', ARGV[1], 'ix', ARGV[11])
redis.call('EXPIRE', skey, ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[9])
return 'new'
