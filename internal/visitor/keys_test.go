package visitor

import (
	"encoding/base64"
	"strings"
	"testing"
)

// Short is the first 12 bytes of Sum in base64url, for every purpose and
// value, 16 characters long.
func TestShortIsSumInBase64(t *testing.T) {
	t.Parallel()
	h, err := NewHasher([]byte(strings.Repeat("k", MinIndexKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Purpose{PurposeVisitor, PurposeEmail, PurposeRateLimit} {
		for _, v := range []string{"", "a", NewVisitorID(), strings.Repeat("é", 100)} {
			got := h.Short("shop", p, v)
			if want := base64.RawURLEncoding.EncodeToString(h.Sum("shop", p, v)[:12]); got != want || len(got) != 16 {
				t.Errorf("Short(shop, %s, %q) = %q, want %q", p, v, got, want)
			}
		}
	}
	if got, want := h.VisitorKey("shop", "id"), h.Short("shop", PurposeVisitor, "id"); got != want {
		t.Errorf("VisitorKey = %q, want Short's %q", got, want)
	}
}
