-- settle_erasure: settles an erasure: when its marker still owes (HDEL takes
-- it), appends the audit entry (n = 1, no folding; lib_audit_add); the marker
-- goes either way.
--
-- KEYS[1] erasure markers    er:{site}
-- KEYS[2] what they owe      er:{site}:o
-- KEYS[3] audit stream       au:{site}
--
-- ARGV[1] marker
-- ARGV[2] now ms
-- ARGV[3] MINID ms
-- ARGV[4] stream TTL ms
-- ARGV[5] actor
-- ARGV[6] action
-- ARGV[7] target
--
-- Reply: 1 when it wrote the entry, 0 when nothing was owed.
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
auditAdd(KEYS[3], ARGV[2], {'t', ARGV[2], 'l', ARGV[2], 'n', '1', 'actor', ARGV[5], 'action', ARGV[6], 'target', ARGV[7]})
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
