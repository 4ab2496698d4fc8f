-- pending: reports whether the re-expiry job has work; a site whose data may
-- have been written under an older layout (schema key below the version given,
-- subjects stored) gets the job's flag once, so that one pass migrates every
-- subject. A site without data needs none, and what it stores from then on is
-- of the version given: its schema key records that at once, so that its
-- first subjects do not start a pass that would chase every new visitor.
--
-- KEYS[1] schema key      cfg:schema:{site}
-- KEYS[2] flag            cfg:reexpire:{site}
-- KEYS[3] subject index   sj:{site}
--
-- ARGV[1] schema version
-- ARGV[2] now ms
--
-- Reply: 1 when the flag is set, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('SET', KEYS[2], ARGV[2], 'NX') end
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('EXISTS', KEYS[2])
