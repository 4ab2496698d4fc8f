package visitor

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Fixed retention windows of data whose lifetime no site configures; the store
// applies them as the TTLs of storage.go (TombstoneTTL, WebhookTTL, StatsTTL).
const (
	tombstoneDays    = 395 // 13 months: the longest an identity token lives
	webhookQueueDays = 3
	counterDays      = 400
)

// Names of the categories of data subjects.
const (
	recSubjectVisitors  = "Website visitors"
	recSubjectChatUsers = "Chat users"
)

// ProcessingRecord is a site's record of processing activities (GDPR Art. 30(1)),
// built from the configuration and retention in force when it was generated.
type ProcessingRecord struct {
	GeneratedAt time.Time
	Controller  RecordController
	Site        RecordSite
	Subjects    []RecordSubject
	Categories  []RecordCategory
	Purposes    []RecordPurpose
	Retention   []RecordRetention
	Recipients  []RecordRecipient
	// Transfers describes transfers to third countries, as the controller declared them.
	Transfers  string
	Safeguards []RecordSafeguard
}

// RecordController names the controller and its data protection officer.
type RecordController struct {
	Name    string
	Contact string
	DPO     string
}

// RecordSite is the site the record covers and the privacy settings that shape it.
type RecordSite struct {
	ID               string
	Origins          []string
	ConsentMode      ConsentMode
	ConsentMeaning   string
	ConsentValidDays int
	PolicyVersion    string
	IPMode           IPMode
}

// RecordSubject is a category of data subjects.
type RecordSubject struct {
	Name        string
	Description string
}

// RecordCategory is a category of personal data: what is kept, of whom, and for how long.
type RecordCategory struct {
	Name        string
	Description string
	Subjects    []string
	Retention   string
}

// RecordPurpose is a purpose of the processing with the legal bases it rests on.
type RecordPurpose struct {
	Name        string
	Description string
	Categories  []string
	LegalBases  []RecordLegalBasis
}

// RecordLegalBasis is a legal basis of GDPR Art. 6(1) and what it covers.
type RecordLegalBasis struct {
	Article string
	Basis   string
	Note    string
}

// RecordRetention is how long one family of data is kept; Configurable says
// whether the privacy team sets it (PUT /v1/sites/{site}/retention).
type RecordRetention struct {
	Category     string
	Data         string
	Days         int
	From         string
	Configurable bool
}

// Kinds of recipients.
const (
	RecipientOperators = "operators"
	RecipientWebhook   = "webhook"
)

// RecordRecipient is a recipient, or category of recipients, of the data; Kind
// is RecipientOperators or RecipientWebhook.
type RecordRecipient struct {
	Kind        string
	Name        string
	Description string
}

// RecordSafeguard is a technical or organisational security measure (Art. 32).
type RecordSafeguard struct {
	Name        string
	Description string
}

// Names of the categories of personal data.
const (
	recCatVisitorID = "Pseudonymous visitor id"
	recCatPages     = "Pages visited"
	recCatLocation  = "Coarse location"
	recCatDevice    = "Device"
	recCatReferrer  = "Referrer"
	recCatIP        = "IP address"
	recCatConsent   = "Consent records"
	recCatContact   = "Chat contact details"
)

// Names of the purposes of the processing.
const (
	recPurposeLiveChat     = "Operating the live chat"
	recPurposeMeasuring    = "Measuring visits"
	recPurposeMarketing    = "Recording marketing permission"
	recPurposeConsentProof = "Consent proof"
	recPurposeSecurity     = "Security and audit"
)

// ProcessingRecord returns the record of processing of the actor's site, built
// from its live configuration and the retention in force. It reads no store.
func (s *Service) ProcessingRecord(a Actor) ProcessingRecord {
	site := a.Site
	r := s.Retention(site)
	transfers := strings.TrimSpace(site.Controller.Transfers)
	if transfers == "" {
		transfers = "none declared"
	}
	return ProcessingRecord{
		GeneratedAt: utc(s.now()),
		Controller:  RecordController{Name: site.Controller.Name, Contact: site.Controller.Contact, DPO: site.Controller.DPO},
		Site: RecordSite{
			ID: site.ID, Origins: append([]string(nil), site.Origins...), ConsentMode: site.Consent,
			ConsentMeaning: consentMeaning(site), ConsentValidDays: site.ConsentValidDays,
			PolicyVersion: site.PolicyVersion, IPMode: ipMode(site),
		},
		Subjects:   recordSubjects(site),
		Categories: recordCategories(site, r),
		Purposes:   recordPurposes(site),
		Retention:  recordRetention(site, r),
		Recipients: recordRecipients(site),
		Transfers:  transfers,
		Safeguards: recordSafeguards(site, r),
	}
}

func ipMode(site *Site) IPMode {
	if site.IP == "" {
		return IPTruncate
	}
	return site.IP
}

func consentMeaning(site *Site) string {
	valid := fmt.Sprintf("A choice is valid for %s and for policy version %q only; then the widget asks again and tracking never resumes by itself.",
		days(site.ConsentValidDays), site.PolicyVersion)
	always := "Do Not Track and Global Privacy Control always win: such visitors are never tracked."
	switch site.Consent {
	case ConsentOnChat:
		return "Nothing identifying is stored and no cookie is set until the visitor starts a chat; " +
			"the chat start is their request and is recorded as consent (method chat_start); from then on their page views are tracked. " +
			valid + " " + always
	case ConsentOptOut:
		return fmt.Sprintf("Page views are tracked until the visitor refuses; a refusal deletes their behaviour data at once "+
			"and is honoured for %s. %s Do Not Track stops tracking; Global Privacy Control is an objection and also deletes the visitor's behaviour data.",
			days(int(RefusalLifetimeOptOut/(24*time.Hour))), valid)
	default:
		return "Nothing identifying is stored and no cookie is set until the visitor grants analytics consent. " + valid + " " + always
	}
}

// modeBasis is the legal basis of tracking page views under the site's consent mode.
func modeBasis(site *Site) RecordLegalBasis {
	switch site.Consent {
	case ConsentOptOut:
		return RecordLegalBasis{Article: "Art. 6(1)(f) GDPR", Basis: "legitimate interests",
			Note: "understanding how the site is used and giving a chat its context; the visitor may object at any time " +
				"(refusal in the widget, Global Privacy Control as an objection under Art. 21(5), Do Not Track), which stops tracking and deletes the data"}
	case ConsentOnChat:
		return RecordLegalBasis{Article: "Art. 6(1)(a) GDPR", Basis: "consent",
			Note: "given by starting a chat (method chat_start); withdrawable at any time, which deletes the behaviour data"}
	default:
		return RecordLegalBasis{Article: "Art. 6(1)(a) GDPR", Basis: "consent",
			Note: "analytics consent given in the widget; withdrawable at any time, which deletes the behaviour data"}
	}
}

func recordSubjects(site *Site) []RecordSubject {
	var tracked string
	switch site.Consent {
	case ConsentOnChat:
		tracked = "their visits are recorded only after they start a chat"
	case ConsentOptOut:
		tracked = "their visits are recorded unless they refuse or object"
	default:
		tracked = "their visits are recorded only after they grant analytics consent"
	}
	return []RecordSubject{
		{Name: recSubjectVisitors, Description: "People who browse " + list(site.Origins, "the site") + "; " + tracked +
			". Visitors sending Do Not Track or Global Privacy Control, and bots, are only counted anonymously."},
		{Name: recSubjectChatUsers, Description: "Visitors who start a chat and may give their name, e-mail and phone to be answered."},
	}
}

func recordCategories(site *Site, r Retention) []RecordCategory {
	both := []string{recSubjectVisitors, recSubjectChatUsers}
	pages := "Page URL (fragment dropped; query kept only for " + list(site.KeepQuery, "no parameter") + "; "
	if n := len(site.RedactPaths); n > 0 {
		pages += fmt.Sprintf("paths matching %d redaction pattern(s) stored as %s; ", n, RedactedPath)
	}
	pages += fmt.Sprintf("at most %d bytes), ", MaxURLBytes)
	if site.KeepTitle {
		pages += fmt.Sprintf("page title (at most %d bytes), ", MaxTitleBytes)
	} else {
		pages += "no page title, "
	}
	pages += "time of the view and time on page, grouped in sessions."
	var ip string
	switch ipMode(site) {
	case IPDrop:
		ip = "Not stored with visits (ip: drop). Consent records keep the IP truncated to its /24 (IPv4) or /48 (IPv6) network."
	case IPFull:
		ip = "Stored in full with visits (ip: full). Consent records keep it truncated to its /24 (IPv4) or /48 (IPv6) network."
	default:
		ip = "Stored truncated to its /24 (IPv4) or /48 (IPv6) network (ip: truncate); the full address is never stored."
	}
	return []RecordCategory{
		{Name: recCatVisitorID, Subjects: both,
			Description: "A random id (at least 128 bits, one per site) in a signed token, kept in the vt_" + site.ID +
				" cookie or in the site's own storage; the same browser on two sites is two unrelated visitors.",
			Retention: fmt.Sprintf("%s after the last visit (profiles); the token itself at most %s from its issue", days(r.Profiles), days(identityDays(r)))},
		{Name: recCatPages, Subjects: both, Description: pages,
			Retention: days(r.Sessions) + " after the session's last page view (sessions)"},
		{Name: recCatLocation, Subjects: both,
			Description: "Country, region, city and time zone looked up from the IP; nothing finer.",
			Retention:   days(r.Profiles) + " after the last visit (profiles)"},
		{Name: recCatDevice, Subjects: both,
			Description: "Browser, browser version, operating system and whether it is a mobile device, from the User-Agent; the User-Agent itself is not kept with visits.",
			Retention:   days(r.Profiles) + " after the last visit (profiles)"},
		{Name: recCatReferrer, Subjects: both,
			Description: "The origin of an external referrer (scheme and host only) or the path of an internal one.",
			Retention:   days(r.Sessions) + " after the session's last page view (sessions)"},
		{Name: recCatIP, Subjects: both, Description: ip,
			Retention: days(r.Profiles) + " after the last visit (profiles)"},
		{Name: recCatConsent, Subjects: both,
			Description: "Pseudonymous visitor id, time, the choice for each purpose (analytics, marketing), policy version, SHA-256 of the legal text shown, " +
				"how it was given (banner, api, chat_start), truncated IP and User-Agent. After an erasure only the keyed hash, time, choices, policy version, text hash and method remain.",
			Retention: days(r.Consents) + " from the record's time (consents)"},
		{Name: recCatContact, Subjects: []string{recSubjectChatUsers},
			Description: "Name, e-mail and phone typed into the chat form, encrypted at rest (AES-256-GCM), and the marketing permission when given; " +
				"the chat is linked to the session current at its start and to the visitor's earlier chats.",
			Retention: days(r.Chats) + " from the chat's start (chats)"},
	}
}

func recordPurposes(site *Site) []RecordPurpose {
	legalObligation := func(note string) RecordLegalBasis {
		return RecordLegalBasis{Article: "Art. 6(1)(c) GDPR", Basis: "legal obligation", Note: note}
	}
	return []RecordPurpose{
		{Name: recPurposeLiveChat,
			Description: "Answering the visitor's chat and giving operators its context: the page trail of the session current at the chat's start, location, device and the visitor's earlier chats.",
			Categories:  []string{recCatContact, recCatVisitorID, recCatPages, recCatLocation, recCatDevice, recCatReferrer},
			LegalBases: []RecordLegalBasis{
				{Article: "Art. 6(1)(b) GDPR", Basis: "contract or steps prior to entering into a contract",
					Note: "answering the chat the visitor started, with the contact details they gave"},
				withNote(modeBasis(site), "for the visit context shown with the chat: "),
			}},
		{Name: recPurposeMeasuring,
			Description: "Recording which pages visitors see, for how long, from where and on which device, and showing operators who is on the site now under a per-session pseudonym.",
			Categories:  []string{recCatVisitorID, recCatPages, recCatLocation, recCatDevice, recCatReferrer, recCatIP},
			LegalBases:  []RecordLegalBasis{modeBasis(site)}},
		{Name: recPurposeMarketing,
			Description: "Recording a chat user's permission to be contacted for marketing, only when they opt in.",
			Categories:  []string{recCatContact, recCatConsent},
			LegalBases: []RecordLegalBasis{{Article: "Art. 6(1)(a) GDPR", Basis: "consent",
				Note: "opt-in at the chat start; withdrawable at any time, which clears the permission on the visitor's chats"}}},
		{Name: recPurposeConsentProof,
			Description: "Keeping the proof of each consent choice, including withdrawals and refusals.",
			Categories:  []string{recCatConsent},
			LegalBases:  []RecordLegalBasis{legalObligation("the controller must be able to demonstrate consent (Art. 7(1))")}},
		{Name: recPurposeSecurity,
			Description: "Recording who read or changed what in the audit trail, keeping erased visitors erased (tombstones) and protecting the service against abuse.",
			Categories:  []string{recCatVisitorID, recCatConsent},
			LegalBases:  []RecordLegalBasis{legalObligation("accountability and security of processing (Art. 5(2), 24, 32) and effective erasure (Art. 17)")}},
	}
}

func withNote(b RecordLegalBasis, prefix string) RecordLegalBasis {
	b.Note = prefix + b.Note
	return b
}

func recordRetention(site *Site, r Retention) []RecordRetention {
	live := (2 * site.SessionTimeout).Round(time.Minute)
	sessions := "Sessions with their pages and referrer"
	if live > 0 {
		sessions += "; the live-view entry expires after " + minutes(live)
	}
	return []RecordRetention{
		{Category: "sessions", Data: sessions, Days: r.Sessions, From: "the session's last write", Configurable: true},
		{Category: "profiles", Data: "Visitor profile: device, location, IP (per ip mode), first and last seen", Days: r.Profiles, From: "the visitor's last write", Configurable: true},
		{Category: "chats", Data: "Chats with their encrypted contact details and marketing permission", Days: r.Chats, From: "the chat's start", Configurable: true},
		{Category: "consents", Data: "Consent records", Days: r.Consents, From: "the record's time", Configurable: true},
		{Category: "audit", Data: "Audit trail (targets as keyed hashes)", Days: r.Audit, From: "each entry's time", Configurable: true},
		{Category: "tombstones", Data: "Keyed hash of an erased visitor's id (13 months)", Days: tombstoneDays, From: "the erasure"},
		{Category: "webhook queue", Data: "Undelivered webhook events, encrypted", Days: webhookQueueDays, From: "the event"},
		{Category: "anonymous counters", Data: "Per-day counts of tracked and untracked page views by reason; no identifier, no URL", Days: counterDays, From: "the day counted"},
	}
}

func recordRecipients(site *Site) []RecordRecipient {
	var operators, privacy int
	for _, k := range site.Keys {
		switch k.Role {
		case RoleOperator:
			operators++
		case RolePrivacy:
			privacy++
		}
	}
	out := []RecordRecipient{{
		Kind: RecipientOperators,
		Name: "Operators of site " + site.ID,
		Description: fmt.Sprintf("The site's chat operators (%d operator key(s)) see who is on the site now under per-session pseudonyms and the context of a chat; "+
			"its privacy team (%d privacy key(s)) exports, rectifies and erases data. Every read of a chat and every change is audited.", operators, privacy),
	}}
	if host := webhookHost(site.Webhook.URL); host != "" {
		out = append(out, RecordRecipient{
			Kind: RecipientWebhook,
			Name: host,
			Description: "Webhook of the site: receives chat.started (chat id, contact details, marketing permission, page URL), " +
				"subject.rectified and subject.erased events, signed with HMAC-SHA256, over HTTPS.",
		})
	}
	return out
}

func webhookHost(raw string) string {
	if strings.TrimSpace(raw) == "" {
		return ""
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Hostname() == "" {
		return "the configured webhook"
	}
	return u.Hostname()
}

func recordSafeguards(site *Site, r Retention) []RecordSafeguard {
	minimise := fmt.Sprintf("IP per the site's ip mode (%s); query strings dropped except %s; fragments dropped; an external referrer kept as its origin only; ",
		ipMode(site), list(site.KeepQuery, "no parameter"))
	if len(site.RedactPaths) > 0 {
		minimise += fmt.Sprintf("%d path pattern(s) redacted; ", len(site.RedactPaths))
	}
	if site.KeepTitle {
		minimise += fmt.Sprintf("titles at most %d bytes; ", MaxTitleBytes)
	} else {
		minimise += "no titles; "
	}
	minimise += fmt.Sprintf("URLs at most %d bytes; location no finer than a city; operators see only the current session under a per-session pseudonym, never earlier sessions, until the visitor starts a new chat.", MaxURLBytes)
	return []RecordSafeguard{
		{Name: "Encryption at rest", Description: "Contact details and queued webhook events are encrypted with AES-256-GCM; " +
			"each ciphertext carries its key id and is bound to site, field and record; keys rotate (the newest encrypts, all decrypt)."},
		{Name: "Signed tokens", Description: fmt.Sprintf("Identity and refusal tokens are signed with HMAC-SHA256 under rotating secrets and compared in constant time; "+
			"the token never travels in a URL; its lifetime is fixed when issued (at most %s) and never extended.", days(identityDays(r))) +
			" The cookie is HttpOnly and, in production, Secure, SameSite=None and Partitioned."},
		{Name: "Keyed hashes", Description: "Store keys, the e-mail blind index, audit targets, session pseudonyms and rate-limit keys use HMAC under per-site, per-purpose keys (HKDF); no key name holds a visitor id or an e-mail."},
		{Name: "API keys", Description: "Operator and privacy API keys are stored only as SHA-256 hashes, compared in constant time, and belong to one site and one role."},
		{Name: "Expiry of every key", Description: "Every key written has a time-to-live from the retention table; only configuration keys (retention overrides), which hold no personal data, have none."},
		{Name: "Data minimisation", Description: minimise},
		{Name: "Do Not Track and Global Privacy Control", Description: "A request with DNT or GPC stores nothing, refreshes nothing, sets no cookie and expires an identity cookie; GPC also deletes the visitor's behaviour data. Bots are not tracked. Such page views are only counted anonymously."},
		{Name: "Audit trail", Description: "Every read of a chat, export, rectification, erasure and retention change is recorded with the key id, the action and the target as a keyed hash."},
		{Name: "Erasure with tombstones", Description: "An erasure removes every key of the subject, index entries and queued webhooks included; a tombstone (keyed hash, 13 months) keeps the erased identity foreign; consent proof is cut to what points at no one."},
		{Name: "Tenant isolation and logs", Description: "A site's keys read nothing of another site; logs carry no contact detail, full IP, token or raw path."},
	}
}

// identityDays is the longest an identity token issued under r lives: 13 months
// at most and never longer than profiles are kept.
func identityDays(r Retention) int {
	limit := int(MaxCookieLifetime / (24 * time.Hour))
	if r.Profiles <= 0 || r.Profiles > limit {
		return limit
	}
	return r.Profiles
}

func minutes(d time.Duration) string {
	if n := int(d / time.Minute); n != 1 {
		return strconv.Itoa(n) + " minutes"
	}
	return "1 minute"
}

func days(n int) string {
	if n == 1 {
		return "1 day"
	}
	return strconv.Itoa(n) + " days"
}

func list(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ", ")
}
