//go:build race

package protocol

// raceEnabled: under the race detector sync.Pool drops items at random (the JSON library
// pools its decoders), so allocation counts are not meaningful.
const raceEnabled = true
