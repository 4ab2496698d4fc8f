package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

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
		c.Data(http.StatusOK, "text/markdown; charset=utf-8", []byte(recordMarkdown(r)))
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

// recordMarkdown renders a record of processing as a Markdown document:
// headings, and tables for the controller, the categories and the retention
// windows. Configuration strings are escaped so that none can break a table or
// add a line.
func recordMarkdown(r visitor.ProcessingRecord) string {
	var w recordWriter
	for _, section := range []func(*recordWriter, visitor.ProcessingRecord){
		(*recordWriter).title,
		(*recordWriter).controller,
		(*recordWriter).site,
		(*recordWriter).subjects,
		(*recordWriter).categories,
		(*recordWriter).purposes,
		(*recordWriter).retention,
		(*recordWriter).recipients,
		(*recordWriter).transfers,
		(*recordWriter).safeguards,
	} {
		section(&w, r)
	}
	return w.String()
}

// recordWriter builds the Markdown of a record of processing, one section per
// method; each section but the last ends with a blank line.
type recordWriter struct{ strings.Builder }

// line writes one formatted line.
func (w *recordWriter) line(format string, args ...any) {
	fmt.Fprintf(w, format, args...)
	w.WriteByte('\n')
}

func (w *recordWriter) title(r visitor.ProcessingRecord) {
	w.line("# Record of processing activities: %s", md(r.Site.ID))
	w.line("")
	w.line("Record of processing activities (GDPR Art. 30(1)) of the site `%s`, generated %s from its live configuration.",
		md(r.Site.ID), r.GeneratedAt.UTC().Format(time.RFC3339))
	w.line("")
}

func (w *recordWriter) controller(r visitor.ProcessingRecord) {
	w.line("## Controller")
	w.line("")
	w.line("| | |")
	w.line("|---|---|")
	w.line("| Controller | %s |", md(declared(r.Controller.Name)))
	w.line("| Contact | %s |", md(declared(r.Controller.Contact)))
	w.line("| Data protection officer | %s |", md(declared(r.Controller.DPO)))
	w.line("")
}

func (w *recordWriter) site(r visitor.ProcessingRecord) {
	w.line("## Site")
	w.line("")
	w.line("| | |")
	w.line("|---|---|")
	w.line("| Site | %s |", md(r.Site.ID))
	w.line("| Origins | %s |", md(mdList(r.Site.Origins, "none")))
	w.line("| Consent mode | %s |", md(string(r.Site.ConsentMode)))
	w.line("| Consent valid for | %s |", mdDays(r.Site.ConsentValidDays))
	w.line("| Policy version | %s |", md(declared(r.Site.PolicyVersion)))
	w.line("| IP mode | %s |", md(string(r.Site.IPMode)))
	w.line("")
	w.line("**Consent mode %s.** %s", md(string(r.Site.ConsentMode)), md(r.Site.ConsentMeaning))
	w.line("")
}

func (w *recordWriter) subjects(r visitor.ProcessingRecord) {
	w.line("## Categories of data subjects")
	w.line("")
	w.line("| data subjects | description |")
	w.line("|---|---|")
	for _, s := range r.Subjects {
		w.line("| %s | %s |", md(s.Name), md(s.Description))
	}
	w.line("")
}

func (w *recordWriter) categories(r visitor.ProcessingRecord) {
	w.line("## Categories of personal data")
	w.line("")
	w.line("| category | data subjects | what is kept | retention |")
	w.line("|---|---|---|---|")
	for _, c := range r.Categories {
		w.line("| %s | %s | %s | %s |", md(c.Name), md(strings.Join(c.Subjects, ", ")), md(c.Description), md(c.Retention))
	}
	w.line("")
}

func (w *recordWriter) purposes(r visitor.ProcessingRecord) {
	w.line("## Purposes and legal bases")
	for _, p := range r.Purposes {
		w.line("")
		w.line("### %s", md(p.Name))
		w.line("")
		w.line("%s", md(p.Description))
		w.line("")
		for _, l := range p.LegalBases {
			w.line("- **Legal basis:** %s, %s: %s.", md(l.Article), md(l.Basis), md(l.Note))
		}
		w.line("- **Data:** %s.", md(strings.Join(p.Categories, ", ")))
	}
	w.line("")
}

func (w *recordWriter) retention(r visitor.ProcessingRecord) {
	w.line("## Retention")
	w.line("")
	w.line("| data | days | counted from | what | set by |")
	w.line("|---|---|---|---|---|")
	for _, t := range r.Retention {
		by := "fixed"
		if t.Configurable {
			by = "privacy team"
		}
		w.line("| %s | %d | %s | %s | %s |", md(t.Category), t.Days, md(t.From), md(t.Data), by)
	}
	w.line("")
}

func (w *recordWriter) recipients(r visitor.ProcessingRecord) {
	w.line("## Recipients")
	w.line("")
	webhook := false
	for _, p := range r.Recipients {
		w.line("- **%s:** %s", md(p.Name), md(p.Description))
		webhook = webhook || p.Kind == visitor.RecipientWebhook
	}
	if !webhook {
		w.line("- No other recipient: no webhook is configured.")
	}
	w.line("")
}

func (w *recordWriter) transfers(r visitor.ProcessingRecord) {
	w.line("## Transfers to third countries")
	w.line("")
	w.line("As declared by the controller: %s", md(r.Transfers))
	w.line("")
}

func (w *recordWriter) safeguards(r visitor.ProcessingRecord) {
	w.line("## Technical and organisational measures")
	w.line("")
	for _, s := range r.Safeguards {
		w.line("- **%s:** %s", md(s.Name), md(s.Description))
	}
}

func declared(s string) string {
	if strings.TrimSpace(s) == "" {
		return "not declared"
	}
	return s
}

// md makes a configuration string safe inside a Markdown table cell or line:
// line breaks and other control characters become spaces, | is escaped so it
// cannot split a cell, and < so it cannot open raw HTML.
func md(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, c := range strings.TrimSpace(s) {
		switch {
		case c == '|':
			b.WriteString(`\|`)
		case c == '<':
			b.WriteString("&lt;")
		case unicode.IsControl(c), c == '\u2028', c == '\u2029':
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// mdDays is n days in words.
func mdDays(n int) string {
	if n == 1 {
		return "1 day"
	}
	return strconv.Itoa(n) + " days"
}

// mdList joins items with commas, or says none.
func mdList(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ", ")
}
