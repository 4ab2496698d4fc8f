//go:build !race

package visitor

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
