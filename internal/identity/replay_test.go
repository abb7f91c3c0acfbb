package identity

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/deviceid"
)

func TestReplayCacheCheck(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(time.Minute, 100)
	now := time.Unix(1_700_000_000, 0)
	if err := c.Check("cam-01", "n1", now, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Check("cam-01", "n1", now, now.Add(time.Second)); !errors.Is(err, ErrReplay) {
		t.Fatalf("repeat: got %v, want ErrReplay", err)
	}
	// The same nonce with another timestamp is still a replay of the nonce.
	if err := c.Check("cam-01", "n1", now.Add(time.Second), now.Add(time.Second)); !errors.Is(err, ErrReplay) {
		t.Fatalf("repeat with new ts: got %v, want ErrReplay", err)
	}
	if err := c.Check("cam-02", "n1", now, now); err != nil {
		t.Fatalf("another device's nonce: %v", err)
	}
	if err := c.Check("cam-01", "n2", now, now); err != nil {
		t.Fatalf("another nonce: %v", err)
	}
	// Device and nonce are separated: ("cam-0","1n1") is not ("cam-01","n1").
	if err := c.Check("cam-0", "1n1", now, now); err != nil {
		t.Fatalf("key confusion: %v", err)
	}
	if c.Len() != 4 {
		t.Fatalf("Len = %d, want 4", c.Len())
	}
}

func TestReplayCacheInputs(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(time.Minute, 100)
	now := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name, device, nonce string
		ts                  time.Time
		want                error
	}{
		{"edge past", "cam-01", "a", now.Add(-time.Minute), nil},
		{"edge future", "cam-01", "b", now.Add(time.Minute), nil},
		{"too old", "cam-01", "c", now.Add(-time.Minute - time.Nanosecond), ErrOutsideWindow},
		{"too new", "cam-01", "d", now.Add(time.Minute + time.Nanosecond), ErrOutsideWindow},
		{"zero time", "cam-01", "e", time.Time{}, ErrOutsideWindow},
		{"year 9999", "cam-01", "f", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ErrOutsideWindow},
		{"empty nonce", "cam-01", "", now, ErrInvalidNonce},
		{"long nonce", "cam-01", strings.Repeat("n", MaxNonceLen+1), now, ErrInvalidNonce},
		{"max nonce", "cam-01", strings.Repeat("n", MaxNonceLen), now, nil},
		{"binary nonce", "cam-01", "\x00\xff", now, nil},
		{"empty device", "", "g", now, deviceid.ErrInvalid},
		{"bad device", "cam/01", "g", now, deviceid.ErrInvalid},
		{"long device", strings.Repeat("d", 65), "g", now, deviceid.ErrInvalid},
	}
	for _, tc := range cases {
		err := c.Check(tc.device, tc.nonce, tc.ts, now)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if c.Len() != 4 {
		t.Fatalf("Len = %d, want 4 (refused checks must record nothing)", c.Len())
	}
}

func TestReplayCacheExpiry(t *testing.T) {
	t.Parallel()
	const w = time.Minute
	c := NewReplayCache(w, 100)
	t0 := time.Unix(1_700_000_000, 0)
	// Stamped 30s in the future: it must be remembered until t0+30s+w.
	ts := t0.Add(30 * time.Second)
	if err := c.Check("cam-01", "n", ts, t0); err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{t0.Add(w), t0.Add(w + 29*time.Second), ts.Add(w)} {
		if err := c.Check("cam-01", "n", ts, now); !errors.Is(err, ErrReplay) {
			t.Fatalf("at %v: got %v, want ErrReplay", now.Sub(t0), err)
		}
	}
	// Past ts+w the timestamp check refuses the old request by itself...
	later := ts.Add(w + time.Nanosecond)
	if err := c.Check("cam-01", "n", ts, later); !errors.Is(err, ErrOutsideWindow) {
		t.Fatalf("after expiry: got %v, want ErrOutsideWindow", err)
	}
	// ...and the entry is forgotten once its bucket is over.
	much := ts.Add(2 * w)
	if err := c.Check("cam-01", "other", much, much); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (expired entry swept)", c.Len())
	}
	// A fresh request reusing the nonce (new timestamp, so a new signature) is accepted.
	if err := c.Check("cam-01", "n", much, much); err != nil {
		t.Fatalf("nonce reuse after expiry: %v", err)
	}
}

func TestReplayCacheFullRefusesInsteadOfForgetting(t *testing.T) {
	t.Parallel()
	const w = time.Minute
	const max = 50
	c := NewReplayCache(w, max)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range max {
		if err := c.Check("cam-01", fmt.Sprint(i), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Check("cam-01", "new", t0, t0); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("got %v, want ErrReplayCacheFull", err)
	}
	// Still inside the window: everything is remembered, replays are refused.
	now := t0.Add(w)
	for i := range max {
		if err := c.Check("cam-01", fmt.Sprint(i), t0, now); !errors.Is(err, ErrReplay) {
			t.Fatalf("nonce %d at t0+w: got %v, want ErrReplay", i, err)
		}
	}
	if err := c.Check("cam-01", "new", now, now); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("got %v, want ErrReplayCacheFull", err)
	}
	// One nanosecond later all of them have expired: room again, without waiting for a
	// whole bucket to pass.
	now = t0.Add(w + time.Nanosecond)
	for i := range max {
		if err := c.Check("cam-01", fmt.Sprintf("new-%d", i), now, now); err != nil {
			t.Fatalf("after expiry, nonce %d: %v", i, err)
		}
	}
	if c.Len() != max {
		t.Fatalf("Len = %d, want %d", c.Len(), max)
	}
}

// Times may go backwards between callers; nothing unexpired may be forgotten.
func TestReplayCacheClockBackwards(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(time.Minute, 100)
	t0 := time.Unix(1_700_000_000, 0)
	if err := c.Check("cam-01", "a", t0, t0.Add(50*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.Check("cam-01", "b", t0, t0); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if err := c.Check("cam-01", n, t0, t0.Add(30*time.Second)); !errors.Is(err, ErrReplay) {
			t.Fatalf("%s: got %v, want ErrReplay", n, err)
		}
	}
}

// A long idle period followed by a check must not loop over every missed bucket, and
// must forget what expired meanwhile.
func TestReplayCacheLongIdle(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(time.Second, 10)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 10 {
		if err := c.Check("cam-01", fmt.Sprint(i), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	later := t0.Add(24 * 365 * time.Hour)
	if err := c.Check("cam-01", "x", later, later); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("Len = %d, want 1", c.Len())
	}
}

func TestReplayCacheDefaultsAndSharding(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(0, 0)
	if c.Window() != DefaultReplayWindow {
		t.Fatalf("window %v", c.Window())
	}
	if len(c.shards) < 2 {
		t.Fatalf("default cache has %d shards, want several", len(c.shards))
	}
	total := 0
	for i := range c.shards {
		total += c.shards[i].limit
	}
	if total > DefaultReplayEntries || total < DefaultReplayEntries-len(c.shards) {
		t.Fatalf("shard limits sum to %d, want about %d", total, DefaultReplayEntries)
	}
	if small := NewReplayCache(time.Minute, 10); len(small.shards) != 1 || small.shards[0].limit != 10 {
		t.Fatal("a small cache must be one exact shard")
	}
}

// Many goroutines racing with the same nonces: each nonce is accepted exactly once.
func TestReplayCacheConcurrent(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(time.Minute, 1<<16)
	now := time.Unix(1_700_000_000, 0)
	const devices, nonces, racers = 8, 200, 4
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for r := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range devices {
				for n := range nonces {
					err := c.Check(fmt.Sprintf("cam-%02d", (d+r)%devices), fmt.Sprint(n), now, now)
					switch {
					case err == nil:
						accepted.Add(1)
					case !errors.Is(err, ErrReplay):
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if got := accepted.Load(); got != devices*nonces {
		t.Fatalf("accepted %d, want %d", got, devices*nonces)
	}
	if c.Len() != devices*nonces {
		t.Fatalf("Len = %d", c.Len())
	}
}

func BenchmarkReplayCacheCheck(b *testing.B) {
	// A steady state: unique nonces, the clock advancing so that entries expire.
	c := NewReplayCache(time.Minute, DefaultReplayEntries)
	t0 := time.Unix(1_700_000_000, 0)
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf [32]byte
		for pb.Next() {
			i := seq.Add(1)
			now := t0.Add(time.Duration(i) * time.Millisecond) // 1000 checks a second
			nonce := fmt.Appendf(buf[:0], "%022d", i)
			if err := c.Check("cam-000123", string(nonce), now, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkReplayCacheCheckReplay(b *testing.B) {
	c := NewReplayCache(time.Minute, DefaultReplayEntries)
	now := time.Unix(1_700_000_000, 0)
	if err := c.Check("cam-000123", "AAAAAAAAAAAAAAAAAAAAAA", now, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Check("cam-000123", "AAAAAAAAAAAAAAAAAAAAAA", now, now); !errors.Is(err, ErrReplay) {
				b.Fatal(err)
			}
		}
	})
}
