// Command gen writes the GeoIP2-City test fixture to the path given as its only
// argument, for a development database:
//
//	go run ./geoip/gen testdata/dev-city.mmdb
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/visitord/visitord/geoip"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: gen PATH (got %d arguments)", len(args))
	}
	if err := geoip.WriteFixtureFile(args[0]); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s (%d networks)\n", args[0], len(geoip.FixtureAnswers))
	return nil
}
