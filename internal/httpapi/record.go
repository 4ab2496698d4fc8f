package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// processingRecordJSON is the answer of GET /v1/sites/{site}/processing-record:
// the GDPR Art. 30 record of the site, mirroring visitor.ProcessingRecord.
type processingRecordJSON struct {
	GeneratedAt time.Time        `json:"generated_at"`
	Controller  recordController `json:"controller"`
	Site        recordSite       `json:"site"`
	Subjects    []recordSubject  `json:"data_subjects"`
	Categories  []recordCategory `json:"data_categories"`
	Purposes    []recordPurpose  `json:"purposes"`
	Retention   []recordRetain   `json:"retention"`
	Recipients  []recordPeer     `json:"recipients"`
	Transfers   string           `json:"transfers"`
	Safeguards  []recordMeasure  `json:"safeguards"`
}

type recordController struct {
	Name    string `json:"name"`
	Contact string `json:"contact"`
	DPO     string `json:"dpo"`
}

type recordSite struct {
	ID               string   `json:"id"`
	Origins          []string `json:"origins"`
	ConsentMode      string   `json:"consent_mode"`
	ConsentMeaning   string   `json:"consent_meaning"`
	ConsentValidDays int      `json:"consent_valid_days"`
	PolicyVersion    string   `json:"policy_version"`
	IPMode           string   `json:"ip_mode"`
}

type recordSubject struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type recordCategory struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Subjects    []string `json:"data_subjects"`
	Retention   string   `json:"retention"`
}

type recordPurpose struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Categories  []string      `json:"data_categories"`
	LegalBases  []recordBasis `json:"legal_bases"`
}

type recordBasis struct {
	Article string `json:"article"`
	Basis   string `json:"basis"`
	Note    string `json:"note"`
}

type recordRetain struct {
	Category     string `json:"category"`
	Data         string `json:"data"`
	Days         int    `json:"days"`
	From         string `json:"from"`
	Configurable bool   `json:"configurable"`
}

type recordPeer struct {
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

type recordMeasure struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// processingRecord answers the site's record of processing as JSON, or as
// Markdown with ?format=md.
func (a *api) processingRecord(c *gin.Context) {
	format := c.Query("format")
	if format != "" && format != "json" && format != "md" {
		a.fail(c, visitor.Errorf(visitor.EInvalid, "format must be json or md"))
		return
	}
	r := a.svc.ProcessingRecord(actorOf(c))
	if format == "md" {
		c.Data(http.StatusOK, "text/markdown; charset=utf-8", []byte(r.Markdown()))
		return
	}
	c.JSON(http.StatusOK, processingRecordOf(r))
}

func processingRecordOf(r visitor.ProcessingRecord) processingRecordJSON {
	out := processingRecordJSON{
		GeneratedAt: r.GeneratedAt,
		Controller:  recordController(r.Controller),
		Site: recordSite{
			ID: r.Site.ID, Origins: append([]string{}, r.Site.Origins...), ConsentMode: string(r.Site.ConsentMode),
			ConsentMeaning: r.Site.ConsentMeaning, ConsentValidDays: r.Site.ConsentValidDays,
			PolicyVersion: r.Site.PolicyVersion, IPMode: string(r.Site.IPMode),
		},
		Subjects:   make([]recordSubject, 0, len(r.Subjects)),
		Categories: make([]recordCategory, 0, len(r.Categories)),
		Purposes:   make([]recordPurpose, 0, len(r.Purposes)),
		Retention:  make([]recordRetain, 0, len(r.Retention)),
		Recipients: make([]recordPeer, 0, len(r.Recipients)),
		Transfers:  r.Transfers,
		Safeguards: make([]recordMeasure, 0, len(r.Safeguards)),
	}
	for _, s := range r.Subjects {
		out.Subjects = append(out.Subjects, recordSubject(s))
	}
	for _, k := range r.Categories {
		out.Categories = append(out.Categories, recordCategory{Name: k.Name, Description: k.Description,
			Subjects: append([]string{}, k.Subjects...), Retention: k.Retention})
	}
	for _, p := range r.Purposes {
		bases := make([]recordBasis, 0, len(p.LegalBases))
		for _, b := range p.LegalBases {
			bases = append(bases, recordBasis(b))
		}
		out.Purposes = append(out.Purposes, recordPurpose{Name: p.Name, Description: p.Description,
			Categories: append([]string{}, p.Categories...), LegalBases: bases})
	}
	for _, t := range r.Retention {
		out.Retention = append(out.Retention, recordRetain(t))
	}
	for _, p := range r.Recipients {
		out.Recipients = append(out.Recipients, recordPeer(p))
	}
	for _, s := range r.Safeguards {
		out.Safeguards = append(out.Safeguards, recordMeasure(s))
	}
	return out
}
