// Package visitor is the domain of visitord: sites, visits, sessions, consent and
// the privacy rules that govern them. It imports no transport, store or database
// library; adapters in sibling packages translate to and from these types.
package visitor

// Device is what visitord keeps of a User-Agent.
type Device struct {
	Browser string
	Version string
	OS      string
	Mobile  bool
	// Bot is true for crawlers and non-browser clients; bots are never tracked.
	Bot bool
}

// Location is what visitord keeps of an IP's geolocation: nothing finer than a city.
type Location struct {
	Country  string // ISO 3166-1 alpha-2, e.g. "DE"
	Region   string // ISO 3166-2 subdivision code without the country, e.g. "BE"
	City     string // English name, e.g. "Berlin"
	TimeZone string // IANA name, e.g. "Europe/Berlin"
}
