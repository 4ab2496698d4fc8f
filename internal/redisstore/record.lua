-- record: adds a consent record to a subject's records (lib_record).
--
-- KEYS[1] records  ch:{site:chat}:r
--
-- ARGV[1] record JSON
-- ARGV[2] expiry ms
-- ARGV[3] now ms
--
-- Reply: 1.
record(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
return 1
