package devicekit

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// Extreme random sources: the smallest and the largest draw.
func randLow(int64) int64    { return 0 }
func randHigh(n int64) int64 { return n - 1 }

func TestBackoffBoundsWithoutRetryAfter(t *testing.T) {
	t.Parallel()
	p := backoffPolicy{Base: 100 * time.Millisecond, Max: 3 * time.Second, MaxRetryAfter: time.Minute}
	for _, tc := range []struct {
		attempt int
		window  time.Duration
	}{
		{-1, 100 * time.Millisecond}, // a negative attempt is the first
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{4, 1600 * time.Millisecond},
		{5, 3 * time.Second}, // 3.2 s capped
		{40, 3 * time.Second},
		{1 << 20, 3 * time.Second}, // no overflow
	} {
		low, high := p, p
		low.rand, high.rand = randLow, randHigh
		if d := low.Delay(tc.attempt, 0); d != 1 {
			t.Errorf("attempt %d, lowest draw: %v, want 1ns", tc.attempt, d)
		}
		if d := high.Delay(tc.attempt, 0); d != tc.window {
			t.Errorf("attempt %d, highest draw: %v, want the window %v", tc.attempt, d, tc.window)
		}
	}
}

func TestBackoffHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	p := backoffPolicy{Base: 100 * time.Millisecond, Max: 3 * time.Second, MaxRetryAfter: 10 * time.Second}
	low, high := p, p
	low.rand, high.rand = randLow, randHigh
	for _, tc := range []struct {
		attempt         int
		retryAfter      time.Duration
		lowest, highest time.Duration
	}{
		// Never less than retryAfter; spread over the exponential window after it (not
		// over another retryAfter: the worker spreads its retryAfters itself).
		{0, 2 * time.Second, 2 * time.Second, 2*time.Second + 100*time.Millisecond - 1},
		{5, time.Second, time.Second, 4*time.Second - 1},
		// Capped at MaxRetryAfter, also when the jitter would pass it.
		{5, 8 * time.Second, 8 * time.Second, 10 * time.Second},
		{0, 24 * time.Hour, 10 * time.Second, 10 * time.Second},
	} {
		if d := low.Delay(tc.attempt, tc.retryAfter); d != tc.lowest {
			t.Errorf("attempt %d, retryAfter %v, lowest draw: %v, want %v", tc.attempt, tc.retryAfter, d, tc.lowest)
		}
		if d := high.Delay(tc.attempt, tc.retryAfter); d != tc.highest {
			t.Errorf("attempt %d, retryAfter %v, highest draw: %v, want %v", tc.attempt, tc.retryAfter, d, tc.highest)
		}
	}
	// A policy without MaxRetryAfter ignores retryAfter.
	nora := backoffPolicy{Base: time.Second, Max: time.Minute, rand: randHigh}
	if d := nora.Delay(0, time.Hour); d != time.Second {
		t.Errorf("policy without MaxRetryAfter: %v, want the plain window 1s", d)
	}
}

// Random draws stay within the bounds and do spread: a fleet told the same retryAfter does
// not come back at one instant.
func TestBackoffSpreads(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, p := range []backoffPolicy{credentialsBackoff, ossBackoff, publishBackoff} {
		p.rand = rng.Int64N
		for attempt := range 12 {
			for _, ra := range []time.Duration{0, time.Second} {
				seen := map[time.Duration]bool{}
				for range 200 {
					d := p.Delay(attempt, ra)
					lo, hi := time.Duration(1), p.window(attempt)
					if ra > 0 && p.MaxRetryAfter > 0 {
						lo, hi = ra, min(p.MaxRetryAfter, ra+hi)
					}
					if d < lo || d > hi {
						t.Fatalf("%+v attempt %d retryAfter %v: %v outside [%v, %v]", p, attempt, ra, d, lo, hi)
					}
					seen[d] = true
				}
				if len(seen) < 100 {
					t.Errorf("%+v attempt %d: only %d distinct delays in 200 draws", p, attempt, len(seen))
				}
			}
		}
	}
}

func TestBackoffPoliciesBounded(t *testing.T) {
	t.Parallel()
	for name, p := range map[string]backoffPolicy{"credentials": credentialsBackoff, "oss": ossBackoff,
		"publish": publishBackoff} {
		if p.Base <= 0 || p.Max < p.Base || p.Max > 5*time.Minute || p.MaxRetryAfter > 5*time.Minute {
			t.Errorf("%s policy %+v is not bounded sensibly", name, p)
		}
	}
	if b := connectBackoff; b.Min <= 0 || b.Max < b.Min || b.Max > 5*time.Minute {
		t.Errorf("connect backoff %+v is not bounded sensibly", b)
	}
	if credentialsBackoff.Attempts < 2 || ossBackoff.Attempts < 2 {
		t.Error("credentials and OSS retries must be bounded in attempts")
	}
}

type connectWaits struct {
	mu    sync.Mutex
	waits []connectWaitCall
}

type connectWaitCall struct {
	attempt int
	wait    time.Duration
}

func (c *connectWaits) record(attempt int, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, connectWaitCall{attempt, wait})
}

func (c *connectWaits) get() []connectWaitCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// checkConnectWaits checks that every wait is within its backoff window and that the
// attempts count up from 0.
func checkConnectWaits(t *testing.T, waits []connectWaitCall) {
	t.Helper()
	if len(waits) == 0 {
		t.Fatal("no connection backoff")
	}
	for i, w := range waits {
		if w.attempt != i || w.wait <= 0 || w.wait > connectBackoff.Window(w.attempt) {
			t.Errorf("wait %d: attempt %d, %v; want attempt %d within (0, %v]", i, w.attempt, w.wait, i, connectBackoff.Window(i))
		}
	}
}

// Connect's retries against a broker that is not there back off with jitter, and Close
// ends a wait at once.
func TestConnectRetriesBackOff(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every attempt is refused at once
	k, err := New(Config{BrokerURL: "tcp://" + addr, DeviceID: "cam-nobroker", DeviceKey: zeroKey("cam-nobroker"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var cw connectWaits
	k.onConnectWait = cw.record
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := k.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect without a broker: %v", err)
	}
	checkConnectWaits(t, cw.get())
}

// After the broker restarts, the kit's reconnection waits a jittered time first.
func TestReconnectBacksOff(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k, err := New(s.kitConfig("cam-reconnect"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var cw connectWaits
	k.onConnectWait = cw.record
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := k.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if w := cw.get(); len(w) != 0 {
		t.Fatalf("Connect's first attempt waited: %v", w)
	}
	gen := k.gen.Load()
	s.restartBroker()
	for k.gen.Load() == gen {
		if ctx.Err() != nil {
			t.Fatal("no reconnection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkConnectWaits(t, cw.get())
}
