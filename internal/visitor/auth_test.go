package visitor

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

// Invariant 7: a key is authenticated against the requested site's keys only
// and acts with the role given there; one listed on several sites acts on each.
func TestAuthenticateAgainstTheRequestedSite(t *testing.T) {
	hash := func(key string) [32]byte { return sha256.Sum256([]byte(key)) }
	shop := &Site{ID: "shop", Keys: []APIKey{{ID: "agency-ops", Role: RoleOperator, SHA256: hash("agency")}, {ID: "dpo", Role: RolePrivacy, SHA256: hash("shop-dpo")}}}
	blog := &Site{ID: "blog", Keys: []APIKey{{ID: "agency-dpo", Role: RolePrivacy, SHA256: hash("agency")}}}
	wiki := &Site{ID: "wiki", Keys: []APIKey{{ID: "wiki-agent", Role: RoleOperator, SHA256: hash("wiki")}}}
	sites, err := NewSites([]*Site{shop, blog, wiki})
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{sites: sites}
	tests := []struct {
		name    string
		site    string
		key     string
		roles   []Role
		want    Actor
		wantErr error
	}{
		{name: "agency key as operator on shop", site: "shop", key: "agency", roles: []Role{RoleOperator, RolePrivacy}, want: Actor{Site: shop, KeyID: "agency-ops", Role: RoleOperator}},
		{name: "agency key as privacy on blog", site: "blog", key: "agency", roles: []Role{RolePrivacy}, want: Actor{Site: blog, KeyID: "agency-dpo", Role: RolePrivacy}},
		{name: "agency key's shop role is not privacy", site: "shop", key: "agency", roles: []Role{RolePrivacy}, wantErr: ErrForbidden},
		{name: "a site that does not list the key", site: "wiki", key: "agency", roles: []Role{RoleOperator}, wantErr: ErrForbidden},
		{name: "shop's key on blog", site: "blog", key: "shop-dpo", roles: []Role{RolePrivacy}, wantErr: ErrForbidden},
		{name: "a key no site lists", site: "shop", key: "nobody", roles: []Role{RoleOperator}, wantErr: ErrUnauthorized},
		{name: "no key", site: "shop", key: "", roles: []Role{RoleOperator}, wantErr: ErrUnauthorized},
		{name: "unknown site", site: "nope", key: "agency", roles: []Role{RoleOperator}, wantErr: ErrUnknownSite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := svc.Authenticate(tt.site, tt.key, tt.roles...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Authenticate = %+v, %v; want %v", got, err, tt.wantErr)
				}
				for _, leak := range []string{"another site", "elsewhere", "agency-", "blog", "shop-dpo"} {
					if tt.site != leak && strings.Contains(err.Error(), leak) {
						t.Errorf("error %q tells %q", err, leak)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Authenticate = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
