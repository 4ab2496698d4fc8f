package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// marketingQuestion is what the widget asks beside a chat's contact fields.
const marketingQuestion = "May we also send you news and offers by e-mail? You can withdraw this at any time."

// widgetConfigResponse is the answer of GET /v1/sites/{site}/widget-config.
type widgetConfigResponse struct {
	Site              string `json:"site"`
	ConsentMode       string `json:"consent_mode"`
	PolicyVersion     string `json:"policy_version"`
	LegalText         string `json:"legal_text"`
	MarketingQuestion string `json:"marketing_question"`
}

// widgetConfig answers what the widget shows: the consent mode, the legal text
// and policy version a consent is given for, and the marketing question.
func (a *api) widgetConfig(c *gin.Context) {
	site, err := a.widgetSite(c, c.Param("site"), false, widgetLimit{})
	if err != nil {
		a.fail(c, err)
		return
	}
	// The same for every visitor: a short cache spares a request per page view.
	c.Header("Cache-Control", "public, max-age=60")
	c.JSON(http.StatusOK, widgetConfigResponse{
		Site: site.ID, ConsentMode: string(site.Consent), PolicyVersion: site.PolicyVersion,
		LegalText: site.LegalText, MarketingQuestion: marketingQuestion,
	})
}
