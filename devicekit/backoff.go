package devicekit

import (
	mrand "math/rand/v2"
	"time"

	"github.com/clipgate/clipgate/internal/mqttclient"
)

// backoffPolicy is the kit's one retry schedule: exponential backoff with full jitter.
//
// Retry n (n = 0 after the first failure) waits a uniformly random time in (0, w], where
// w = min(Max, Base·2ⁿ). When the server named a retryAfter, the wait is retryAfter plus
// a random time in [0, max(w, retryAfter)), and at most MaxRetryAfter: a server hands the
// same retryAfter to everyone it refuses at once, so waiting exactly that long would bring
// them all back together; spreading them over the next interval of the same length does not.
// A retryAfter beyond MaxRetryAfter is taken as MaxRetryAfter, so one reply cannot park
// a device for a day.
type backoffPolicy struct {
	Base, Max     time.Duration
	MaxRetryAfter time.Duration
	// Attempts bounds the tries of one operation (the first included); 0 means the caller
	// decides.
	Attempts int
	// rand returns a uniform int64 in [0, n); nil means math/rand/v2. Tests inject their own.
	rand func(n int64) int64
}

// The retry schedules of the kit.
var (
	// Credentials requests (busy, rate_limited, unavailable, internal, no reply).
	credentialsBackoff = backoffPolicy{Base: backoffBase, Max: backoffCap, MaxRetryAfter: maxRetryAfter, Attempts: maxAttempts}
	// OSS requests that failed transiently (network errors, timeouts, 5xx).
	ossBackoff = backoffPolicy{Base: 500 * time.Millisecond, Max: 20 * time.Second, MaxRetryAfter: time.Minute, Attempts: 5}
	// Event publications that did not get their acknowledgement, and outbox flushes.
	publishBackoff = backoffPolicy{Base: 200 * time.Millisecond, Max: 30 * time.Second}
)

// maxShift keeps Base<<attempt from overflowing: Base up to a minute shifted by 30 is still
// far below the int64 range.
const maxShift = 30

// window is the jitter window of retry attempt: min(Max, Base·2^attempt).
func (p backoffPolicy) window(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	if attempt > maxShift {
		return p.Max
	}
	return min(p.Max, p.Base<<attempt)
}

// Delay returns the wait before retry number attempt+1 (attempt counts from 0), given the
// server's retryAfter (0 when it named none; ignored by a policy without MaxRetryAfter).
func (p backoffPolicy) Delay(attempt int, retryAfter time.Duration) time.Duration {
	w := p.window(attempt)
	if retryAfter <= 0 || p.MaxRetryAfter <= 0 {
		return time.Duration(p.randN(int64(w))) + 1
	}
	ra := min(retryAfter, p.MaxRetryAfter)
	d := ra + time.Duration(p.randN(int64(max(w, ra))))
	return min(d, p.MaxRetryAfter)
}

func (p backoffPolicy) randN(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if p.rand != nil {
		return p.rand(n)
	}
	return mrand.Int64N(n)
}

// connectBackoff paces the broker connection attempts (the MQTT client applies it), so
// that a fleet that lost its broker at once does not come back at once.
var connectBackoff = mqttclient.Backoff{Min: time.Second, Max: time.Minute}

// retryFlush schedules another outbox flush after a jittered backoff (publishBackoff) when
// a publication failed while the broker connection is up; a new connection flushes anyway.
func (k *Kit) retryFlush() {
	k.mu.Lock()
	client, closed := k.client, k.closed
	k.mu.Unlock()
	if closed || client == nil || !client.Paho().IsConnected() {
		return
	}
	n := k.flushFail.Add(1)
	time.AfterFunc(publishBackoff.Delay(int(n-1), 0), k.flushOutbox)
}
