package httpapi

import (
	"errors"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

const actorKey = "visitord.actor"

// operator authenticates an operator or privacy route by its Bearer key for the
// route's :site; roles lists who may use it. Such routes send no CORS headers
// and ignore cookies.
func (a *api) operator(roles ...visitor.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		site, err := a.siteOf(c, c.Param("site"))
		if err != nil {
			a.fail(c, err)
			return
		}
		actor, err := a.svc.Authenticate(site.ID, bearerKey(c.GetHeader("Authorization")), roles...)
		if err != nil {
			if errors.Is(err, visitor.ErrUnauthorized) {
				c.Header("WWW-Authenticate", `Bearer realm="visitord"`)
			}
			a.fail(c, err)
			return
		}
		c.Set(actorKey, actor)
		c.Header("Cache-Control", "no-store")
		if err := a.limit(c, site, visitor.LimitAPI, visitor.ByAPIKey, visitor.KeySubject(actor.KeyID)); err != nil {
			a.fail(c, err)
		}
	}
}

// bearerKey is the credential of an Authorization header of the Bearer scheme,
// whose name is case-insensitive (RFC 7235 §2.1), or "" for any other header.
func bearerKey(header string) string {
	scheme, key, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(key)
}

func actorOf(c *gin.Context) visitor.Actor {
	v, _ := c.Get(actorKey)
	a, _ := v.(visitor.Actor)
	return a
}

// operators is who may read visitor context; privacy keys may too.
var operators = []visitor.Role{visitor.RoleOperator, visitor.RolePrivacy}

// queryInt reads an optional whole-number query parameter; 0 when absent.
func queryInt(c *gin.Context, name string) (int, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, visitor.Errorf(visitor.EInvalid, "%s must be a whole number ≥ 1", name)
	}
	return n, nil
}
