package visitor_test

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/visitor"
)

// Invariant 7: a key is authenticated against the requested site's keys only
// and acts with the role given there; one listed on several sites acts on each.
func TestAuthenticateAgainstTheRequestedSite(t *testing.T) {
	t.Parallel()
	hash := func(key string) [32]byte { return sha256.Sum256([]byte(key)) }
	shop := &visitor.Site{ID: "shop", Keys: []visitor.APIKey{{ID: "agency-ops", Role: visitor.RoleOperator, SHA256: hash("agency")}, {ID: "dpo", Role: visitor.RolePrivacy, SHA256: hash("shop-dpo")}}}
	blog := &visitor.Site{ID: "blog", Keys: []visitor.APIKey{{ID: "agency-dpo", Role: visitor.RolePrivacy, SHA256: hash("agency")}}}
	wiki := &visitor.Site{ID: "wiki", Keys: []visitor.APIKey{{ID: "wiki-agent", Role: visitor.RoleOperator, SHA256: hash("wiki")}}}
	sites, err := visitor.NewSites([]*visitor.Site{shop, blog, wiki})
	if err != nil {
		t.Fatal(err)
	}
	svc := visitor.NewService(visitor.Deps{Sites: sites})
	tests := []struct {
		name    string
		site    string
		key     string
		roles   []visitor.Role
		want    visitor.Actor
		wantErr error
	}{
		{name: "agency key as operator on shop", site: "shop", key: "agency", roles: []visitor.Role{visitor.RoleOperator, visitor.RolePrivacy}, want: visitor.Actor{Site: shop, KeyID: "agency-ops", Role: visitor.RoleOperator}},
		{name: "agency key as privacy on blog", site: "blog", key: "agency", roles: []visitor.Role{visitor.RolePrivacy}, want: visitor.Actor{Site: blog, KeyID: "agency-dpo", Role: visitor.RolePrivacy}},
		{name: "agency key's shop role is not privacy", site: "shop", key: "agency", roles: []visitor.Role{visitor.RolePrivacy}, wantErr: visitor.ErrForbidden},
		{name: "a site that does not list the key", site: "wiki", key: "agency", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrForbidden},
		{name: "shop's key on blog", site: "blog", key: "shop-dpo", roles: []visitor.Role{visitor.RolePrivacy}, wantErr: visitor.ErrForbidden},
		{name: "a key no site lists", site: "shop", key: "nobody", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrUnauthorized},
		{name: "no key", site: "shop", key: "", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrUnauthorized},
		{name: "unknown site", site: "nope", key: "agency", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrUnknownSite},
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
