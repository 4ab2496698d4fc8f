-- reexpire_proof: re-expires the consent proof an erasure left (lib_reexpire).
--
-- KEYS[1] proof  pf:{site:hash}
--
-- ARGV[1] now ms
-- ARGV[2] consents window ms
--
-- Reply: 1 when proof remains, else 0.
if rerecords(KEYS[1], tonumber(ARGV[2])) > 0 then return 1 end
return 0
