package visitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name          string
		err           error
		code, message string
		text          string // err.Error(), what the logs see
		is            error
	}{
		{name: "nil", err: nil, code: "", message: ""},
		{name: "sentinel", err: ErrNotFound, code: ENotFound, message: "not found", text: "not found", is: ErrNotFound},
		{name: "errorf", err: Errorf(EInvalid, "limit must be 1..%d", 200), code: EInvalid, message: "limit must be 1..200",
			text: "invalid request: limit must be 1..200", is: ErrInvalid},
		{name: "wrapped", err: fmt.Errorf("export chat of shop: %w", Errorf(ENotFound, "no chat %q", "c1")), code: ENotFound,
			message: `no chat "c1"`, text: `export chat of shop: not found: no chat "c1"`, is: ErrNotFound},
		{name: "store wraps the cause", err: fmt.Errorf("%w: %v", ErrStoreUnavailable, errors.New("i/o timeout")), code: EStoreUnavailable,
			message: "the store is unavailable; try again shortly", is: ErrStoreUnavailable},
		{name: "rate limit", err: &RateLimitError{RetryAfter: 1500 * time.Millisecond}, code: ERateLimited,
			message: "too many requests; try again in 2 s", text: "too many requests; try again in 2 s", is: ErrRateLimited},
		{name: "unknown", err: errors.New("redis: ERR wrong type"), code: EInternal, message: "internal error", text: "redis: ERR wrong type"},
		{name: "internal sentinel", err: fmt.Errorf("bind chat: %w", ErrErased), code: EInternal, message: "internal error", is: ErrErased},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := ErrorCode(tt.err), tt.code; got != want {
				t.Errorf("ErrorCode = %q, want %q", got, want)
			}
			if got, want := ErrorMessage(tt.err), tt.message; got != want {
				t.Errorf("ErrorMessage = %q, want %q", got, want)
			}
			if tt.text != "" {
				if got, want := tt.err.Error(), tt.text; got != want {
					t.Errorf("Error() = %q, want %q", got, want)
				}
			}
			if tt.is != nil && !errors.Is(tt.err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.is)
			}
		})
	}
	if errors.Is(Errorf(ERetentionBounds, "x"), ErrInvalid) {
		t.Error("an error of one code is another code's sentinel")
	}
}

// TestDomainErrorCodes checks the code and the one-line message of each client
// error the domain builds before it reaches its store.
func TestDomainErrorCodes(t *testing.T) {
	t.Parallel()
	site := &Site{ID: "shop", Origins: []string{"https://shop.example"}, Consent: ConsentOptOut, ConsentValidDays: 180,
		PolicyVersion: "2026-11", Retention: Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}}
	sites, err := NewSites([]*Site{site})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := NewHasher(bytes.Repeat([]byte("i"), 32))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner([][]byte{bytes.Repeat([]byte("s"), MinSecretBytes)})
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(Deps{Sites: sites, Signer: signer, Hasher: hasher})
	ctx := context.Background()
	dpo := Actor{Site: site, KeyID: "dpo", Role: RolePrivacy}
	now := time.Now().UTC()
	for _, tt := range []struct {
		name string
		err  error
		code string
		says string // what the message must name
	}{
		{name: "hit type", err: Hit{Site: site, Type: "click"}.Validate(), code: EInvalid, says: "type"},
		{name: "pageview without url", err: Hit{Site: site, Type: HitPageview}.Validate(), code: EInvalid, says: "url"},
		{name: "page of another origin", err: second(site.MinimisePage("https://evil.example/", "", "")), code: EURLNotInSite, says: "origin"},
		{name: "relative url", err: second(site.MinimisePage("/cart", "", "")), code: EInvalid, says: "url"},
		{name: "contact email", err: Contact{Email: "not-an-address"}.Validate(), code: EInvalid, says: "contact.email"},
		{name: "contact phone", err: Contact{Phone: "call me"}.Validate(), code: EInvalid, says: "contact.phone"},
		{name: "unknown site", err: second(sites.Get("nope")), code: EUnknownSite, says: `"nope"`},
		{name: "no key", err: second(svc.Authenticate("shop", "", RoleOperator)), code: EUnauthorized, says: "Bearer"},
		{name: "wrong key", err: second(svc.Authenticate("shop", "k", RoleOperator)), code: EUnauthorized, says: "API key"},
		{name: "retention bounds", err: site.ValidateRetention(Retention{Sessions: 0, Profiles: 1, Chats: 1, Consents: 180, Audit: 365}, 1, 1825),
			code: ERetentionBounds, says: "sessions"},
		{name: "consents below profiles", err: second(svc.SetRetention(ctx, dpo, Retention{Sessions: 1, Profiles: 400, Chats: 1, Consents: 200, Audit: 365})),
			code: ERetentionBounds, says: "consents"},
		{name: "audit below floor", err: second(svc.SetRetention(ctx, dpo, Retention{Sessions: 1, Profiles: 1, Chats: 1, Consents: 180, Audit: 30})),
			code: ERetentionBounds, says: "audit"},
		{name: "policy outdated", err: second(svc.SetConsent(ctx, ConsentRequest{Site: site, PolicyVersion: "2020-01"})), code: EPolicyOutdated, says: "2026-11"},
		{name: "live within", err: second(svc.Live(ctx, dpo, time.Hour, "", 0)), code: EInvalid, says: "within"},
		{name: "live limit", err: second(svc.Live(ctx, dpo, 0, "", 201)), code: EInvalid, says: "limit"},
		{name: "live cursor", err: second(svc.Live(ctx, dpo, 0, "forged.cursor", 0)), code: EInvalid, says: "cursor"},
		{name: "stats range reversed", err: second(svc.StatsRange(ctx, dpo, now, now.AddDate(0, 0, -1))), code: EInvalid, says: "from"},
		{name: "stats range too long", err: second(svc.StatsRange(ctx, dpo, now.AddDate(0, 0, -100), now)), code: EInvalid, says: "90"},
		{name: "audit limit", err: third(svc.AuditTrail(ctx, dpo, "", "", 500)), code: EInvalid, says: "limit"},
		{name: "audit target e-mail", err: third(svc.AuditTrail(ctx, dpo, "a@b.example", "", 0)), code: EInvalid, says: "e-mail"},
		{name: "search without e-mail", err: third(svc.SearchSubjects(ctx, dpo, " ")), code: EInvalid, says: "email"},
		{name: "malformed visitor", err: second(svc.ExportVisitor(ctx, dpo, "x")), code: ENotFound, says: `"x"`},
		{name: "malformed chat", err: second(svc.ExportChat(ctx, dpo, "y")), code: ENotFound, says: `"y"`},
		{name: "erase malformed chat", err: svc.EraseChat(ctx, dpo, "y"), code: ENotFound, says: `"y"`},
		{name: "me without token", err: second(svc.ExportMine(ctx, site, "")), code: EUnauthorized, says: "identity token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := ErrorCode(tt.err), tt.code; got != want {
				t.Fatalf("code of %v = %q, want %q", tt.err, got, want)
			}
			msg := ErrorMessage(tt.err)
			if !strings.Contains(msg, tt.says) || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("message %q: want one line naming %q", msg, tt.says)
			}
			if words := strings.ReplaceAll(tt.code, "_", " "); strings.HasPrefix(msg, words) {
				t.Errorf("message %q repeats the code", msg)
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }
