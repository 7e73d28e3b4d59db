//go:build race

package events

// raceDetector: the race detector slows the client and server several
// times; tests that measure promptness skip under it.
const raceDetector = true
