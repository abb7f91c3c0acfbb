package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/quota"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// TestQuotaEndToEnd (issue 16 point 3), through the in-process stack: the operator sets
// a small daily quota in the console; the device uploads until its clips in the index
// reach it; the console's signed snapshot tells the token workers, which share no
// database with it; the device's next write request gets quota_exceeded with
// retryAfterMs the time to the next UTC midnight, and its spool keeps the clip; a read
// request still works; raising the quota lets the spooled clip upload.
//
// The console's and the workers' clocks are one frozen fake clock, so the expected
// retryAfterMs is exact (the per-device request rate is lifted: it would not refill on a
// frozen clock). The device's clock is the real one, within the workers' window.
func TestQuotaEndToEnd(t *testing.T) {
	t.Parallel()
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return base }
	workers := new(quota.Table)
	e := newEnv(t, envOptions{
		stack: inproc.Options{WorkerConfig: func(w *tokenworker.Config) {
			w.QuotasKey, w.Quotas, w.Now = pub, workers, clock
			w.DeviceRate = rate.Inf
		}},
		serviceRole: topics.RoleConsole,
		config:      func(c *Config) { c.RevocationKey, c.Now = seed, clock },
	})
	testutil.WaitFor(t, "the workers got the first snapshot", func() bool { return !workers.Issued().IsZero() })

	const dev = "cam-quota"
	first := e.upload(dev, "first.mp4", clipData(1000, 1), base)
	e.waitIndexed(first.Key)
	a := e.api()
	a.login()
	var info QuotaInfo
	a.json(http.MethodPut, "/api/devices/"+dev+"/quota", map[string]int64{"dayBytes": 2500, "monthBytes": 0}, http.StatusOK, &info)
	if info.DayUsed != 1000 || !info.OverUntil.IsZero() || !info.Enforced {
		t.Fatalf("after setting the quota: %+v", info)
	}
	testutil.WaitFor(t, "the workers got the quota", func() bool {
		es := workers.Entries()
		return len(es) == 1 && es[0] == quota.Entry{Device: dev, DayLimit: 2500, DayUsed: 1000, MonthUsed: 1000}
	})
	// Under the quota: two more clips (the kit's credentials are cached meanwhile).
	for i, name := range []string{"second.mp4", "third.mp4"} {
		e.waitIndexed(e.upload(dev, name, clipData(1000, byte(i+2)), base).Key)
	}
	midnight := quota.DayStart(base).AddDate(0, 0, 1)
	testutil.WaitFor(t, "the workers saw the device over its quota", func() bool { return workers.ResetAt(dev, base).Equal(midnight) })
	a.json(http.MethodGet, "/api/devices/"+dev+"/quota", nil, http.StatusOK, &info)
	if info.DayUsed != 3000 || !info.OverUntil.Equal(midnight) {
		t.Fatalf("over the quota: %+v", info)
	}

	// The device restarts with a clip in its spool, without the credentials it keeps on
	// disk (with them it would upload until they expire: the documented overshoot).
	e.closeKit(dev)
	kept, _ := filepath.Glob(filepath.Join(e.stack.DeviceConfig(dev).StateDir, "credentials-*.json"))
	if len(kept) == 0 {
		t.Fatal("the kit kept no credentials on disk")
	}
	for _, f := range kept {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	k := e.kit(dev)
	dir := t.TempDir()
	data := clipData(1500, 9)
	if err := os.WriteFile(filepath.Join(dir, "spooled.mp4"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 64)
	uploaded := make(chan devicekit.SpoolEvent, 1)
	sp, err := devicekit.NewSpool(k, devicekit.SpoolConfig{Dir: dir, Settle: time.Millisecond, PollInterval: 20 * time.Millisecond,
		RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond, OnEvent: func(ev devicekit.SpoolEvent) {
			switch ev.Kind {
			case devicekit.SpoolRetry:
				select {
				case refused <- ev.Err:
				default:
				}
			case devicekit.SpoolUploaded:
				uploaded <- ev
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // before the kit closes
	for range 2 {
		var ae *clipgate.AuthError
		select {
		case err := <-refused:
			if !errors.As(err, &ae) || ae.Code != clipgate.CodeQuotaExceeded || ae.RetryAfter != midnight.Sub(base) {
				t.Fatalf("spool attempt: %v, want quota_exceeded with retryAfter %v", err, midnight.Sub(base))
			}
		case <-time.After(time.Minute):
			t.Fatal("no refused attempt")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "spooled.mp4")); err != nil {
		t.Fatalf("the clip left the spool while over quota: %v", err)
	}
	// Reading is still allowed.
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	r, err := k.Open(rctx, first.Key)
	if err != nil {
		t.Fatalf("Open over quota: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, clipData(1000, 1)) {
		t.Fatalf("reading over quota: %d bytes, %v", len(got), err)
	}

	// The operator raises the quota: the spooled clip goes.
	a.json(http.MethodPut, "/api/devices/"+dev+"/quota", map[string]int64{"dayBytes": 1 << 20, "monthBytes": 0}, http.StatusOK, &info)
	if !info.OverUntil.IsZero() {
		t.Fatalf("after the raise: %+v", info)
	}
	select {
	case ev := <-uploaded:
		if ev.Event == nil || ev.Event.Status != clipgate.StatusCompleted {
			t.Fatalf("spool upload: %+v", ev)
		}
		if c := e.waitIndexed(ev.Event.Key); c.Size != int64(len(data)) {
			t.Fatalf("indexed: %+v", c)
		}
	case <-time.After(time.Minute):
		t.Fatal("the spooled clip was not uploaded after the raise")
	}
	if _, err := os.Stat(filepath.Join(dir, "spooled.mp4")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the uploaded clip is still in the spool: %v", err)
	}
	if st := e.console.Stats(); st.QuotaSnapshots < 3 {
		t.Fatalf("console stats: %+v", st)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestQuotaSnapshotRefusals (issue 16 point 3): snapshots on the quota topic that are
// forged (another key), stale (older than the one in force), garbage, or another signed
// document under the console's key (its revocation list) are refused by the token
// workers with a log line saying why, and the snapshot in force stays; an admin may not
// publish there at all; the console's next snapshot still applies.
func TestQuotaSnapshotRefusals(t *testing.T) {
	t.Parallel()
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	// One frozen clock for the console and the workers: the day cannot turn mid-test.
	base := time.Now().UTC()
	clock := func() time.Time { return base }
	workers := new(quota.Table)
	var logs syncBuffer
	e := newEnv(t, envOptions{
		stack: inproc.Options{WorkerConfig: func(w *tokenworker.Config) {
			w.QuotasKey, w.Quotas, w.Now = pub, workers, clock
			w.Logger = zerolog.New(&logs)
		}},
		serviceRole: topics.RoleConsole,
		config:      func(c *Config) { c.RevocationKey, c.Now = seed, clock },
	})
	ctx := context.Background()
	const dev = "cam-01"
	now := base
	ev := clipEvent(dev, "ev-1", e.stack.Prefix()+dev+"/a.mp4", now)
	if _, err := e.db.Index(ctx, ev, nil, now); err != nil {
		t.Fatal(err)
	}
	if err := e.console.SetQuota(ctx, dev, Quota{DayBytes: 5}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the workers saw the device over its quota", func() bool { return !workers.ResetAt(dev, base).IsZero() })
	inForce := workers.Issued()

	otherSeed, _ := identity.NewRevocationKey()
	lifted := &quota.Snapshot{Issued: base.Add(time.Second), Day: now}
	forged, err := quota.Sign(otherSeed, lifted)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := quota.Sign(seed, &quota.Snapshot{Issued: inForce.Add(-time.Hour), Day: now})
	if err != nil {
		t.Fatal(err)
	}
	revList, err := identity.SignRevocationList(seed, base.Add(time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	thief := e.serviceClient(topics.RoleConsole)
	for _, payload := range [][]byte{forged, stale, []byte("garbage"), revList} {
		publishRetained(t, thief, e.stack.Topics().Quotas(), payload, true)
	}
	testutil.WaitFor(t, "the workers refused four snapshots", func() bool {
		st, _ := e.stack.WorkerStats(0)
		return st.QuotaSnapshotsRefused >= 4
	})
	if !workers.Issued().Equal(inForce) || workers.ResetAt(dev, base).IsZero() {
		t.Fatalf("a refused snapshot changed the one in force: %+v", workers.Entries())
	}
	out := logs.String()
	for _, why := range []string{"bad signature", "older than the snapshot in force", "no \\\"clipgate-quotas-v1\\\" header", "previous snapshot stays in force"} {
		if !strings.Contains(out, why) {
			t.Errorf("the workers' log does not say %q:\n%s", why, out)
		}
	}
	// An admin may not publish there: the broker refuses it.
	adm := e.admin()
	denied := e.stack.BrokerStats().ACLDenied
	adm.Publish(e.stack.Topics().Quotas(), 1, false, forged).WaitTimeout(10 * time.Second)
	testutil.WaitFor(t, "the broker refused the admin's publish", func() bool { return e.stack.BrokerStats().ACLDenied > denied })

	// The console's next snapshot applies.
	if err := e.console.SetQuota(ctx, dev, Quota{DayBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the workers applied the raise", func() bool { return workers.ResetAt(dev, base).IsZero() })
}
