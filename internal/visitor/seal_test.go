package visitor_test

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/visitor"
)

// Invariant 8: a contact detail is sealed with AES-256-GCM as
// "kid:base64(nonce|ciphertext)", holds nothing of its plaintext, and opens
// only in its place: the additional data site|field|record binds it, so moved
// to another record, field or site it fails to open, never to the wrong
// plaintext. A rotated sealer opens what an older key sealed.
func TestSealerBindsCiphertextToItsPlace(t *testing.T) {
	t.Parallel()
	old, err := visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: bytes.Repeat([]byte("d"), 32)}})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := visitor.NewSealer([]visitor.DataKey{{ID: "k2", Key: bytes.Repeat([]byte("e"), 32)}, {ID: "k1", Key: bytes.Repeat([]byte("d"), 32)}})
	if err != nil {
		t.Fatal(err)
	}
	const plain = "grace@navy.example"
	sealed := old.Seal("shop", "email", "chat-a", plain)
	if !regexp.MustCompile(`^k1:[A-Za-z0-9+/]+={0,2}$`).MatchString(sealed) || strings.Contains(sealed, "grace") {
		t.Fatalf("sealed = %q, want kid:base64 holding nothing of the plaintext", sealed)
	}
	if again := old.Seal("shop", "email", "chat-a", plain); again == sealed {
		t.Error("sealing twice gave the same ciphertext: the nonce is not random")
	}
	for _, tt := range []struct {
		name                string
		sealer              *visitor.Sealer
		site, field, record string
		sealed              string
		want                string
		fails               bool
	}{
		{name: "its place", sealer: old, site: "shop", field: "email", record: "chat-a", sealed: sealed, want: plain},
		{name: "its place after rotation", sealer: rotated, site: "shop", field: "email", record: "chat-a", sealed: sealed, want: plain},
		{name: "another record", sealer: old, site: "shop", field: "email", record: "chat-b", sealed: sealed, fails: true},
		{name: "another field", sealer: old, site: "shop", field: "name", record: "chat-a", sealed: sealed, fails: true},
		{name: "another site", sealer: old, site: "blog", field: "email", record: "chat-a", sealed: sealed, fails: true},
		{name: "an unknown key id", sealer: old, site: "shop", field: "email", record: "chat-a", sealed: "k9" + strings.TrimPrefix(sealed, "k1"), fails: true},
		{name: "a flipped byte", sealer: old, site: "shop", field: "email", record: "chat-a", sealed: sealed[:len(sealed)-4] + "AAAA", fails: true},
		{name: "empty", sealer: old, site: "shop", field: "email", record: "chat-a", sealed: "", want: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.sealer.Open(tt.site, tt.field, tt.record, tt.sealed)
			if tt.fails {
				if err == nil || got != "" {
					t.Errorf("Open = %q, %v; want an error and no plaintext", got, err)
				}
				// Errors reach logs: they name no record.
				if err != nil && strings.Contains(err.Error(), tt.record) {
					t.Errorf("Open's error %q names the record", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Open = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
