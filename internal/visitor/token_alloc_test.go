package visitor

import "testing"

// Signing allocates the token string only; verifying, the fields' string.
// Under the race detector sync.Pool drops a quarter of what is put back at
// random, so a few pooled states are made anew: the bound there is still far
// below what an unpooled HMAC costs (18 allocations to sign, 12 to verify).
func TestSignVerifyAllocations(t *testing.T) {
	signer, _, _ := poolSigners(t)
	tok := poolTokens()[1]
	raw := signer.Sign(tok)
	most := 1.0
	if raceEnabled {
		most = 4
	}
	if n := testing.AllocsPerRun(100, func() { signer.Sign(tok) }); n > most {
		t.Errorf("Sign: %v allocations, want at most %v", n, most)
	}
	if n := testing.AllocsPerRun(100, func() { signer.Verify(raw, "shop", poolNow) }); n > most {
		t.Errorf("Verify: %v allocations, want at most %v", n, most)
	}
}

// A visitor id is one allocation: its string (two under the race detector,
// whose instrumentation moves a buffer to the heap).
func TestNewVisitorIDAllocations(t *testing.T) {
	most := 1.0
	if raceEnabled {
		most = 2
	}
	if n := testing.AllocsPerRun(100, func() { _ = NewVisitorID() }); n > most {
		t.Errorf("NewVisitorID: %v allocations, want at most %v", n, most)
	}
}
