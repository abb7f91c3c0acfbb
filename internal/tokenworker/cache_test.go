package tokenworker

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
)

func TestCredCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCredCache(3)
	live := protocol.Credentials{AccessKeyID: "live", Expiration: now.Add(time.Hour)}
	stale := protocol.Credentials{AccessKeyID: "stale", Expiration: now.Add(time.Minute)}
	deadline := now.Add(10 * time.Minute)
	c.put(credKey{"a", "w"}, live, deadline)
	c.put(credKey{"b", "w"}, stale, deadline)
	c.put(credKey{"c", "w"}, live, deadline)
	if _, ok := c.get(credKey{"b", "w"}, deadline); ok {
		t.Fatal("credentials expiring before the deadline were reused")
	}
	if cr, ok := c.get(credKey{"a", "w"}, deadline); !ok || cr.AccessKeyID != "live" {
		t.Fatal("live credentials not found")
	}
	if _, ok := c.get(credKey{"a", "r"}, deadline); ok {
		t.Fatal("credentials reused across modes")
	}
	// Full: the stale entry goes first.
	c.put(credKey{"d", "w"}, live, deadline)
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := c.get(credKey{k, "w"}, deadline); !ok {
			t.Fatalf("%s evicted instead of the stale entry", k)
		}
	}
	// Full of live entries: one of them goes, the bound holds.
	c.put(credKey{"e", "w"}, live, deadline)
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	if _, ok := c.get(credKey{"e", "w"}, deadline); !ok {
		t.Fatal("newest entry missing")
	}
	// Replacing an entry does not evict.
	c.put(credKey{"e", "w"}, live, deadline)
	if c.len() != 3 {
		t.Fatalf("len %d after replace, want 3", c.len())
	}
	c.forget("e")
	if _, ok := c.get(credKey{"e", "w"}, deadline); ok || c.len() != 2 {
		t.Fatal("forget left the device's credentials")
	}
}

func TestDeviceLimiter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newDeviceLimiter(2, 3, 2) // 2/s, burst 3, 2 devices tracked
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok %v wait %v, want refused for 500ms", ok, wait)
	}
	if ok, _ := l.allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("token not refilled after the wait")
	}
	// A third device sweeps b (idle, full) but keeps a (not refilled).
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("b refused")
	}
	if ok, _ := l.allow("c", now.Add(time.Hour)); !ok {
		t.Fatal("c refused")
	}
	if len(l.m) > 2 {
		t.Fatalf("%d devices tracked, bound 2", len(l.m))
	}
	// Zero burst refuses everything; an infinite rate allows everything.
	if ok, wait := newDeviceLimiter(1, 0, 10).allow("a", now); ok || wait <= 0 {
		t.Fatal("zero burst allowed a request")
	}
	inf := newDeviceLimiter(float64(rate.Inf), 1, 10)
	for i := 0; i < 100; i++ {
		if ok, _ := inf.allow("a", now); !ok {
			t.Fatal("infinite rate refused a request")
		}
	}
}

// TestAuditLog checks the one line per decision: who, what, outcome, and never a secret.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	var buf testutil.SyncBuffer
	cfg := c.config(fleet)
	off := false
	cfg.Seal = &off // the reply carries the secrets in clear; the log must not
	cfg.Logger = zerolog.New(&buf)
	w := newWorker(t, cfg)

	r := newRequest(t, fleet, "cam-audit", "w", time.Now())
	rep := decodeReply(t, r.ID, handle(t, w, r))
	cr := openCredentials(t, r, rep)
	bad := newRequest(t, newFleetKey(t), "cam-audit", "w", time.Now())
	handle(t, w, bad)
	w.Handle(bg, "not/a/topic", []byte("x"))

	out := buf.String()
	for _, secret := range []string{cr.AccessKeyID, cr.AccessKeySecret, cr.SecurityToken, c.secret, r.Sig} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains a secret %q:\n%s", secret, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var decisions int
	for _, l := range lines {
		if strings.Contains(l, `"message":"auth decision"`) {
			decisions++
			for _, field := range []string{`"device":"cam-audit"`, `"id":"`, `"outcome":`, `"latency_ms":`, `"cached":`} {
				if !strings.Contains(l, field) {
					t.Errorf("audit line without %s: %s", field, l)
				}
			}
		}
	}
	if decisions != 2 {
		t.Fatalf("%d audit lines, want 2:\n%s", decisions, out)
	}
	if !strings.Contains(out, `"code":"unauthenticated"`) || !strings.Contains(out, `"outcome":"ok"`) ||
		!strings.Contains(out, "dropped without reply") {
		t.Fatalf("log misses an outcome:\n%s", out)
	}
}
