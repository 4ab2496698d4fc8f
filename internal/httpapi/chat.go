package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// chatRequest is the body of POST /v1/chats.
type chatRequest struct {
	Site           string      `json:"site"`
	Contact        contactJSON `json:"contact"`
	MarketingOptIn bool        `json:"marketing_opt_in"`
	URL            string      `json:"url"`
}

type contactJSON struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone"`
}

// chatResponse is the answer of POST /v1/chats.
type chatResponse struct {
	ChatID        string `json:"chat_id"`
	Returning     bool   `json:"returning"`
	PreviousChats int    `json:"previous_chats"`
	Token         string `json:"token,omitempty"`
}

func (a *api) startChat(c *gin.Context) {
	var req chatRequest
	if err := bindJSON(c, &req); err != nil {
		a.fail(c, err)
		return
	}
	site, err := a.widgetSite(c, req.Site, false, widgetLimit{kind: visitor.LimitChat})
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	res, err := a.svc.StartChat(ctx, visitor.ChatRequest{
		Site: site, Contact: visitor.Contact(req.Contact), MarketingOptIn: req.MarketingOptIn, URL: req.URL,
		Token: tokenOf(c, site.ID), UserAgent: c.Request.UserAgent(), IP: clientIP(c),
		DNT: c.GetHeader("DNT") == "1", GPC: c.GetHeader("Sec-GPC") == "1",
	})
	if err != nil {
		a.fail(c, err)
		return
	}
	if res.Token != "" {
		a.setIdentity(c, site.ID, res.Token, res.TokenExpires)
	}
	c.JSON(http.StatusCreated, chatResponse{ChatID: res.ChatID, Returning: res.Returning, PreviousChats: res.PreviousChats, Token: res.Token})
}
