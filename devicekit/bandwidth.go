package devicekit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Upload bandwidth cap (Config.UploadRate, Config.UploadRates).
//
// The cap applies where every upload byte goes out: the TCP connections of the kit's
// OSS HTTP client. Each Write to such a connection first takes tokens from one token
// bucket per kit (golang.org/x/time/rate), so PutObject, the parts of a multipart upload
// (several at once, sharing the bucket), AppendObject and every other OSS request are
// paced together, and the request line, headers and TLS records count as well as the
// body: the cap is what the camera puts on its uplink. Responses (downloads) are not
// capped.

// RateProfile is an upload rate for a daily window of local time.
type RateProfile struct {
	// Window is when the rate applies.
	Window Window
	// Rate is the cap in bytes per second during Window; 0 means no cap.
	Rate int64
}

// String returns "HH:MM-HH:MM=RATE".
func (p RateProfile) String() string { return fmt.Sprintf("%s=%d", p.Window, p.Rate) }

// MinUploadRate is the lowest upload cap, in bytes per second: below it, TLS handshakes
// and OSS's request timeouts stop making sense.
const MinUploadRate = 1 << 10

// checkRate validates an upload rate of field (0 is no cap).
func checkRate(field string, r int64) error {
	if r != 0 && r < MinUploadRate {
		return configErr("%s %d bytes/s: want 0 (no cap) or at least %d", field, r, MinUploadRate)
	}
	return nil
}

// checkRates validates Config.UploadRate and UploadRates.
func (c *Config) checkRates() error {
	if err := checkRate("UploadRate", c.UploadRate); err != nil {
		return err
	}
	for i, p := range c.UploadRates {
		if err := p.Window.check(); err != nil {
			return configErr("UploadRates[%d] window %s: %v", i, p.Window, err)
		}
		if err := checkRate(fmt.Sprintf("UploadRates[%d] (%s)", i, p.Window), p.Rate); err != nil {
			return err
		}
	}
	return nil
}

// throttle is the kit's upload token bucket.
type throttle struct {
	base     int64
	profiles []RateProfile
	now      func() time.Time

	// Test hooks (nil in production), set before the first request.
	sleepUntil func(until time.Time, stop <-chan struct{}) error // waits for the bucket
	onSend     func(at time.Time, n int)                         // n bytes allowed out at at

	mu  sync.Mutex
	lim *rate.Limiter
	cur int64 // the rate lim is set to; 0: not set yet
}

// newThrottle returns the throttle of cfg, or nil when cfg caps nothing.
func newThrottle(cfg Config) *throttle {
	capped := cfg.UploadRate > 0
	for _, p := range cfg.UploadRates {
		capped = capped || p.Rate > 0
	}
	if !capped {
		return nil
	}
	return &throttle{base: cfg.UploadRate, profiles: cfg.UploadRates, now: cfg.Now}
}

// rateAt is the cap at t: that of the first profile whose window holds t, else the base.
func (t *throttle) rateAt(now time.Time) int64 {
	for _, p := range t.profiles {
		if p.Window.Contains(now) {
			return p.Rate
		}
	}
	return t.base
}

// burstOf is the bucket size at rate r: a tenth of a second of it, so that no stretch
// of time sees much more than the cap (any window of length w carries at most
// r·w + r/10 bytes). It is also the largest chunk one Write sends at a time.
func burstOf(r int64) int { return int(max(r/10, 1)) }

// take waits until up to n bytes may go out and returns how many (at least 1), or the
// error of a wait that stop (the connection closing) cut short.
func (t *throttle) take(n int, stop <-chan struct{}) (int, error) {
	t.mu.Lock() // the bucket takes times in order
	now := t.now()
	r := t.rateAt(now)
	if r == 0 {
		t.mu.Unlock()
		return n, nil
	}
	if t.lim == nil {
		t.lim = rate.NewLimiter(rate.Limit(r), burstOf(r))
	} else if r != t.cur {
		t.lim.SetLimitAt(now, rate.Limit(r))
		t.lim.SetBurstAt(now, burstOf(r))
	}
	t.cur = r
	n = min(n, burstOf(r))
	res := t.lim.ReserveN(now, n)
	t.mu.Unlock()
	if !res.OK() { // cannot happen: n is at most the burst
		return 0, errors.New("devicekit: upload throttle refused a write")
	}
	at := now.Add(res.DelayFrom(now))
	if at.After(now) {
		if err := t.wait(at, stop); err != nil {
			res.CancelAt(t.now())
			return 0, err
		}
	}
	if t.onSend != nil {
		t.onSend(at, n)
	}
	return n, nil
}

// errThrottleClosed ends a Write whose connection closed while it waited.
var errThrottleClosed = net.ErrClosed

func (t *throttle) wait(until time.Time, stop <-chan struct{}) error {
	if t.sleepUntil != nil {
		return t.sleepUntil(until, stop)
	}
	timer := time.NewTimer(until.Sub(t.now()))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-stop:
		return errThrottleClosed
	}
}

// install makes every connection of tr paced by t.
func (t *throttle) install(tr *http.Transport) {
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &throttledConn{Conn: c, t: t, closed: make(chan struct{})}, nil
	}
}

// throttledConn paces its writes by the kit's throttle; Close ends a write's wait.
type throttledConn struct {
	net.Conn
	t      *throttle
	closed chan struct{}
	once   sync.Once
}

func (c *throttledConn) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := c.t.take(len(b)-written, c.closed)
		if err != nil {
			return written, err
		}
		m, err := c.Conn.Write(b[written : written+n])
		written += m
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (c *throttledConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
