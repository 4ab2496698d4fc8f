-- migrate: moves what a profile written before the session record held of the
-- session into that record (lib_session's migrate).
--
-- KEYS[1] profile  v:{site:vkey}
-- The session's hash is derived from KEYS[1] and shares its hash tag {site:vkey}.
--
-- ARGV: none.
-- Reply: 1.
if redis.call('HEXISTS', KEYS[1], 'sl') == 1 then migrate(KEYS[1]) end
return 1
