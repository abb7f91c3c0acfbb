package mqttclient

import (
	"math/rand/v2"
	"time"
)

// Backoff paces connection attempts, the first connection's and the reconnections'
// alike. Before retry n (n counts from 0 after the first failure of an outage) a client
// waits a random time in [w/2, w], where w = min(Max, Min·2ⁿ): the fixed half keeps a
// client from hammering a broker that refuses at once, the random half spreads out
// clients that lost their broker together.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is the Backoff of a Config that sets none.
var DefaultBackoff = Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}

// maxShift keeps Min<<n from overflowing: an hour shifted by 20 is still far below the
// int64 range.
const maxShift = 20

// Window returns w for retry n: min(Max, Min·2ⁿ).
func (b Backoff) Window(n int) time.Duration {
	n = max(n, 0)
	if n > maxShift {
		return b.Max
	}
	return min(b.Max, b.Min<<n)
}

// Delay returns the wait before retry n, a random time in [Window(n)/2, Window(n)].
func (b Backoff) Delay(n int) time.Duration {
	w := b.Window(n)
	return w/2 + rand.N(w-w/2+1)
}
