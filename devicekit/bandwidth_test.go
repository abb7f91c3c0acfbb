package devicekit

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that only the throttle's waits move: a wait until t sets the clock
// to t (if it is behind), at once. Concurrent waits thus cost the time of the longest,
// as real ones would.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) sleepUntil(until time.Time, stop <-chan struct{}) error {
	select {
	case <-stop:
		return errThrottleClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.now) {
		c.now = until
	}
	return nil
}

// sendLog records what the throttle let out, and when (fake time).
type sendLog struct {
	mu   sync.Mutex
	at   []time.Time
	n    []int
	sent int64
}

func (l *sendLog) add(at time.Time, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, at)
	l.n = append(l.n, n)
	l.sent += int64(n)
}

// maxIn returns the most bytes let out in any span of length w.
func (l *sendLog) maxIn(w time.Duration) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	idx := make([]int, len(l.at))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return l.at[a].Compare(l.at[b]) })
	var best int64
	for i, a := range idx {
		var sum int64
		for _, b := range idx[i:] {
			if l.at[b].Sub(l.at[a]) >= w {
				break
			}
			sum += int64(l.n[b])
		}
		best = max(best, sum)
	}
	return best
}

// throttledKit connects a kit capped at rate on a fake clock; the log sees every byte the
// throttle lets out.
func throttledKit(t *testing.T, s *stack, device string, rate int64, mod func(*Config)) (*Kit, *fakeClock, *sendLog) {
	t.Helper()
	clock := &fakeClock{now: s.clock.Now()}
	log := &sendLog{}
	k := s.kit(device, func(c *Config) {
		c.Now = clock.Now
		c.UploadRate = rate
		if mod != nil {
			mod(c)
		}
	})
	k.throttle.sleepUntil = clock.sleepUntil
	k.throttle.onSend = log.add
	return k, clock, log
}

// An 8 MiB clip (a multipart upload, three parts at once) at 1 MiB/s: no 2-second span
// carries more than 1.1 times the cap, and the upload takes at least 7 seconds.
func TestUploadRateCapsMultipart(t *testing.T) {
	t.Parallel()
	const rate = 1 << 20
	s := newStack(t, stackOptions{})
	s.consume()
	k, clock, log := throttledKit(t, s, "cam-rate", rate, nil)
	path, data := clipFile(t, "big.mp4", 8<<20)
	start := clock.Now()
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	took := clock.Now().Sub(start)
	if !bytes.Equal(s.object(ev.Key), data) {
		t.Fatal("stored object differs from the clip")
	}
	if log.sent < int64(len(data)) {
		t.Fatalf("the throttle let out %d bytes, less than the clip's %d: some went around it", log.sent, len(data))
	}
	if most, limit := log.maxIn(2*time.Second), int64(2*rate*11/10); most > limit {
		t.Errorf("%d bytes in one 2 s span, above 1.1 × the cap (%d)", most, limit)
	}
	if took < 7*time.Second {
		t.Errorf("the upload took %v of the fake clock, want at least 7s", took)
	}
}

// The cap holds for a single PutObject and for the appends of a recording.
func TestUploadRateCapsPutAndAppend(t *testing.T) {
	t.Parallel()
	const rate = 64 << 10
	const size = 256 << 10
	s := newStack(t, stackOptions{})
	s.consume()
	k, clock, log := throttledKit(t, s, "cam-rate-put", rate, nil)
	minTime := time.Duration(float64(size-burstOf(rate)) / rate * float64(time.Second))

	path, data := clipFile(t, "small.mp4", size)
	start, before := clock.Now(), log.sent
	if _, err := k.Upload(t.Context(), Clip{Path: path}); err != nil {
		t.Fatal(err)
	}
	if took := clock.Now().Sub(start); took < minTime || log.sent-before < int64(len(data)) {
		t.Errorf("put: %v on the fake clock and %d bytes through the throttle; want at least %v and %d", took, log.sent-before, minTime, len(data))
	}

	start, before = clock.Now(), log.sent
	r, err := k.OpenAppend(t.Context(), AppendClip{Name: "live.ts", BufferSize: MinAppendBuffer})
	if err != nil {
		t.Fatal(err)
	}
	data = randomBytes(t, size)
	writeAll(t, r, data)
	if _, err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if took := clock.Now().Sub(start); took < minTime || log.sent-before < int64(len(data)) {
		t.Errorf("append: %v on the fake clock and %d bytes through the throttle; want at least %v and %d", took, log.sent-before, minTime, len(data))
	}
	if most, limit := log.maxIn(2*time.Second), int64(2*rate*11/10); most > limit {
		t.Errorf("%d bytes in one 2 s span, above 1.1 × the cap (%d)", most, limit)
	}
}

// A daily profile changes the cap at its window's edges, on the local time of the clock.
func TestThrottleFollowsProfiles(t *testing.T) {
	t.Parallel()
	night, err := ParseWindow("22:00-06:00")
	if err != nil {
		t.Fatal(err)
	}
	loc := time.FixedZone("camera", 2*3600)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 21, 59, 0, 0, loc)}
	log := &sendLog{}
	th := newThrottle(Config{UploadRate: 10 << 10, UploadRates: []RateProfile{{Window: night, Rate: 100 << 10}}, Now: clock.Now})
	th.sleepUntil, th.onSend = clock.sleepUntil, log.add
	edge := time.Date(2026, 3, 1, 22, 0, 0, 0, loc)
	for clock.Now().Before(edge.Add(time.Minute)) {
		if _, err := th.take(4096, nil); err != nil {
			t.Fatal(err)
		}
	}
	var day, nightBytes int64
	for i, at := range log.at {
		if at.Before(edge) {
			day += int64(log.n[i])
		} else {
			nightBytes += int64(log.n[i])
		}
	}
	// A minute at 10 KiB/s, then a minute at 100 KiB/s, each give or take one burst.
	if day < 59*10<<10 || day > 61*10<<10 {
		t.Errorf("%d bytes in the minute before 22:00 at 10 KiB/s", day)
	}
	if nightBytes < 59*100<<10 || nightBytes > 61*100<<10 {
		t.Errorf("%d bytes in the minute after 22:00 at 100 KiB/s", nightBytes)
	}

	// Outside every window without a base rate: no cap, no wait.
	free := newThrottle(Config{UploadRates: []RateProfile{{Window: night, Rate: 10 << 10}}, Now: func() time.Time { return edge.Add(-time.Hour) }})
	free.sleepUntil = func(time.Time, <-chan struct{}) error { return errors.New("waited") }
	if n, err := free.take(1<<20, nil); n != 1<<20 || err != nil {
		t.Errorf("uncapped take = %d, %v", n, err)
	}
	if newThrottle(Config{UploadRates: []RateProfile{{Window: night, Rate: 0}}}) != nil {
		t.Error("a throttle for a config that caps nothing")
	}
}

// A write waiting for the bucket ends when its connection closes.
func TestThrottleWaitEndsAtClose(t *testing.T) {
	t.Parallel()
	th := newThrottle(Config{UploadRate: MinUploadRate, Now: time.Now})
	stop := make(chan struct{})
	if _, err := th.take(burstOf(MinUploadRate), stop); err != nil { // empties the bucket
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := th.take(burstOf(MinUploadRate), stop)
		done <- err
	}()
	close(stop)
	if err := <-done; !errors.Is(err, errThrottleClosed) {
		t.Errorf("take after close = %v, want %v", err, errThrottleClosed)
	}
}

func TestParseWindow(t *testing.T) {
	t.Parallel()
	at := func(h, m int) time.Time { return time.Date(2026, 1, 2, h, m, 0, 0, time.UTC) }
	good := []struct {
		in       string
		in2, out []time.Time
	}{
		{"22:00-06:00", []time.Time{at(22, 0), at(23, 59), at(0, 0), at(5, 59)}, []time.Time{at(6, 0), at(12, 0), at(21, 59)}},
		{" 9:30 - 17:00 ", []time.Time{at(9, 30), at(16, 59)}, []time.Time{at(9, 29), at(17, 0)}},
		{"00:00-24:00", []time.Time{at(0, 0), at(12, 0), at(23, 59)}, nil},
	}
	for _, g := range good {
		w, err := ParseWindow(g.in)
		if err != nil {
			t.Errorf("ParseWindow(%q): %v", g.in, err)
			continue
		}
		for _, tm := range g.in2 {
			if !w.Contains(tm) {
				t.Errorf("%s does not contain %s", w, tm.Format("15:04"))
			}
		}
		for _, tm := range g.out {
			if w.Contains(tm) {
				t.Errorf("%s contains %s", w, tm.Format("15:04"))
			}
		}
		var back Window
		if err := back.UnmarshalText([]byte(w.String())); err != nil || back != w {
			t.Errorf("%q: String %q reads back as %v, %v", g.in, w, back, err)
		}
	}
	for _, bad := range []string{"", "22:00", "22:00-", "-06:00", "25:00-06:00", "22:60-06:00", "24:30-01:00",
		"10:00-10:00", "24:00-06:00", "ab:cd-01:00", "1:2-03:00", "+1:00-02:00", "22:00-06:00-07:00", "\x00"} {
		if w, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) = %v, want an error", bad, w)
		} else if !strings.Contains(err.Error(), "window") {
			t.Errorf("ParseWindow(%q): error %q does not say what it read", bad, err)
		}
	}
}

// Garbage rates and windows are refused by name, before anything starts.
func TestUploadRateConfigErrors(t *testing.T) {
	t.Parallel()
	base := Config{BrokerURL: "tcp://127.0.0.1:1883", DeviceID: "cam-1", DeviceKey: zeroKey("cam-1")}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative", func(c *Config) { c.UploadRate = -1 }, "UploadRate -1"},
		{"too low", func(c *Config) { c.UploadRate = MinUploadRate - 1 }, "UploadRate 1023"},
		{"profile rate", func(c *Config) { c.UploadRates = []RateProfile{{Window: Window{0, time.Hour}, Rate: 5}} }, "UploadRates[0] (00:00-01:00) 5"},
		{"profile window", func(c *Config) { c.UploadRates = []RateProfile{{Window: Window{time.Hour, time.Hour}, Rate: 0}} }, "UploadRates[0] window"},
		{"profile window past a day", func(c *Config) {
			c.UploadRates = []RateProfile{{Window: Window{0, time.Hour}}, {Window: Window{-time.Minute, time.Hour}}}
		}, "UploadRates[1] window"},
	} {
		c := base
		c.StateDir = t.TempDir()
		tc.mod(&c)
		_, err := New(c)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want ErrConfig naming %q", tc.name, err, tc.want)
		}
	}
	c := base
	c.StateDir = t.TempDir()
	c.UploadRate = MinUploadRate
	k, err := New(c)
	if err != nil {
		t.Fatalf("New with the lowest rate: %v", err)
	}
	k.Close()
}
