//go:build !race

// sync.Pool drops items at random under the race detector, so these counts
// hold only without it (make test runs -race; go test without it runs these).

package visitor

import "testing"

// Signing allocates the token string only; verifying, the fields' string.
func TestSignVerifyAllocations(t *testing.T) {
	signer, _, _ := poolSigners(t)
	tok := poolTokens()[1]
	raw := signer.Sign(tok)
	if n := testing.AllocsPerRun(100, func() { signer.Sign(tok) }); n > 1 {
		t.Errorf("Sign: %v allocations, want at most 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { signer.Verify(raw, "shop", poolNow) }); n > 1 {
		t.Errorf("Verify: %v allocations, want at most 1", n)
	}
}
