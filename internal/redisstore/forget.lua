-- forget: deletes a visitor's behaviour data (lib_forget): every session, the
-- session index and the profile. Consent records and the choice stay as proof.
--
-- KEYS[1] profile        v:{site:vkey}
-- KEYS[2] session index  v:{site:vkey}:S
-- Session keys are derived from KEYS[1] and share its hash tag {site:vkey}.
--
-- ARGV: none.
-- Reply: 1.
forget(KEYS[1], KEYS[2])
return 1
