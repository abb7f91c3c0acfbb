package tokenworker

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/protocol"
)

// credKey identifies cached credentials: one device, one mode.
type credKey struct{ device, mode string }

// credCache keeps the latest credentials issued per device and mode, so that a device that
// asks again (a restart, a lost reply) gets them back without another STS call. Bounded: when
// full, entries that can no longer be reused go first, then arbitrary ones.
type credCache struct {
	mu  sync.Mutex
	m   map[credKey]protocol.Credentials
	max int
}

func newCredCache(max int) *credCache {
	return &credCache{m: make(map[credKey]protocol.Credentials), max: max}
}

// get returns the credentials for k if they are valid until after deadline.
func (c *credCache) get(k credKey, deadline time.Time) (protocol.Credentials, bool) {
	c.mu.Lock()
	cr, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !cr.Expiration.After(deadline) {
		return protocol.Credentials{}, false
	}
	return cr, true
}

// put stores cr for k; deadline marks entries that are no longer worth keeping.
func (c *credCache) put(k credKey, cr protocol.Credentials, deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for key, v := range c.m {
			if !v.Expiration.After(deadline) {
				delete(c.m, key)
			}
		}
		// Still full of live credentials: drop arbitrary ones (map order is random). Those
		// devices merely cost one more STS call.
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = cr
}

// forget drops every entry of a device (it was revoked).
func (c *credCache) forget(device string) { c.forgetAll([]string{device}) }

// forgetAll drops every entry of the devices, in one pass over the cache.
func (c *credCache) forgetAll(devices []string) {
	drop := make(map[string]bool, len(devices))
	for _, d := range devices {
		drop[d] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if drop[k.device] {
			delete(c.m, k)
		}
	}
}

func (c *credCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// bucket is one device's token bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

// deviceLimiter is a per-device token bucket rate limiter (rate.Inf: no limit) with a bounded number of devices.
// A bucket that has refilled completely is the same as a new one, so idle devices are
// swept when the table is full without changing any decision.
type deviceLimiter struct {
	mu    sync.Mutex
	m     map[string]*bucket
	rate  float64 // tokens per second
	burst float64
	max   int
}

func newDeviceLimiter(perSecond float64, burst, max int) *deviceLimiter {
	return &deviceLimiter{m: make(map[string]*bucket), rate: perSecond, burst: float64(burst), max: max}
}

// allow takes one token for device at now. When none is left it returns the wait until one is.
func (l *deviceLimiter) allow(device string, now time.Time) (ok bool, wait time.Duration) {
	if l.rate >= float64(rate.Inf) {
		return true, 0
	}
	if l.burst < 1 {
		return false, time.Hour
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[device]
	if b == nil {
		if len(l.m) >= l.max {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[device] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.rate <= 0 {
		return false, time.Hour
	}
	need := (1 - b.tokens) / l.rate
	return false, time.Duration(need * float64(time.Second))
}

// sweep removes full buckets, then arbitrary ones if the table is still full.
func (l *deviceLimiter) sweep(now time.Time) {
	for id, b := range l.m {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.m, id)
		}
	}
	for id := range l.m {
		if len(l.m) < l.max {
			break
		}
		delete(l.m, id)
	}
}
