package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// consentResponse is the answer of GET and PUT /v1/consent.
type consentResponse struct {
	Analytics     bool       `json:"analytics"`
	Marketing     bool       `json:"marketing"`
	PolicyVersion string     `json:"policy_version"`
	ValidUntil    *time.Time `json:"valid_until"`
	Token         string     `json:"token,omitempty"`
	// Reason says a DNT or GPC signal refused a grant (PUT only).
	Reason string `json:"reason,omitempty"`
}

// consentRequest is the body of PUT /v1/consent.
type consentRequest struct {
	Site          string `json:"site"`
	Analytics     *bool  `json:"analytics"`
	Marketing     *bool  `json:"marketing"`
	PolicyVersion string `json:"policy_version"`
}

func choiceResponse(ch visitor.Choice, token string) consentResponse {
	r := consentResponse{Analytics: ch.Analytics, Marketing: ch.Marketing, PolicyVersion: ch.PolicyVersion, Token: token}
	if !ch.ValidUntil.IsZero() {
		t := ch.ValidUntil.UTC()
		r.ValidUntil = &t
	}
	return r
}

func (a *api) getConsent(c *gin.Context) {
	site, err := a.widgetSite(c, c.Query("site"), false, widgetLimit{})
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	ch, err := a.svc.Consent(ctx, site, tokenOf(c, site.ID))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, choiceResponse(ch, ""))
}

func (a *api) putConsent(c *gin.Context) {
	var req consentRequest
	if err := bindJSON(c, &req); err != nil {
		a.fail(c, err)
		return
	}
	if req.Analytics == nil || req.PolicyVersion == "" {
		a.fail(c, visitor.Errorf(visitor.EInvalid, "analytics and policy_version are required"))
		return
	}
	// Without marketing the request answers analytics alone (the banner asks
	// nothing else): the visitor's marketing permission stays as it is.
	keepMarketing := req.Marketing == nil
	marketing := req.Marketing != nil && *req.Marketing
	site, err := a.widgetSite(c, req.Site, false, widgetLimit{kind: visitor.LimitConsent,
		refusing: !*req.Analytics, marketingOff: *req.Analytics && !keepMarketing && !marketing})
	if err != nil {
		a.fail(c, err)
		return
	}
	method := visitor.MethodAPI
	if c.GetHeader("Origin") != "" {
		method = visitor.MethodBanner
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	res, err := a.svc.SetConsent(ctx, visitor.ConsentRequest{
		Site: site, Analytics: *req.Analytics, Marketing: marketing, KeepMarketing: keepMarketing, PolicyVersion: req.PolicyVersion,
		Method: method, Token: tokenOf(c, site.ID), UserAgent: c.Request.UserAgent(), IP: clientIP(c),
		DNT: c.GetHeader("DNT") == "1", GPC: c.GetHeader("Sec-GPC") == "1",
	})
	if err != nil {
		a.fail(c, err)
		return
	}
	if res.Token != "" {
		a.setIdentity(c, site.ID, res.Token, res.TokenExpires)
	}
	if res.ForgetIdentity {
		a.expireIdentity(c, site.ID)
	}
	out := choiceResponse(res.Choice, res.Token)
	out.Reason = string(res.Reason)
	c.JSON(http.StatusOK, out)
}
