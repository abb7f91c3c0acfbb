package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// BenchmarkRevocationLatency measures how long a revocation made in the console takes
// to reach each component, for the two ways the list travels: "file" (the revocation
// file the broker and the workers watch; the baseline) and "signed-list" (the signed
// list the console publishes, retained, on the revocation topic), and the latter with
// the bucket-policy Deny written to OSS ("+deny"). Each iteration
// connects a new device, then revokes it and reports, from the start of SetRevoked:
// setrevoked-ms (SetRevoked's return: the database, the file or the acknowledged
// publication, and with "+deny" the bucket policy written to OSS, so credentials are
// refused from then on),
// worker-ms (the token workers' list revokes the device) and broker-ms (the broker has
// disconnected it). Run with
//
//	go test -run '^$' -bench RevocationLatency -benchtime 20x ./internal/console/
func BenchmarkRevocationLatency(b *testing.B) {
	for _, mode := range []string{"file", "signed-list", "signed-list+deny"} {
		b.Run(mode, func(b *testing.B) { benchRevocation(b, mode) })
	}
}

func benchRevocation(b *testing.B, mode string) {
	workers := identity.NewRevocations()
	o := envOptions{denyOSS: strings.HasSuffix(mode, "+deny")}
	switch strings.TrimSuffix(mode, "+deny") {
	case "file":
		file := filepath.Join(b.TempDir(), "revoked.txt")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = workers.Watch(ctx, file, nil) }()
		b.Cleanup(func() { cancel(); <-done })
		o.stack = inproc.Options{
			BrokerConfig: func(c *broker.Config) { c.Revocations, c.RevocationsFile = nil, file },
			WorkerConfig: func(c *tokenworker.Config) { c.Revocations = workers },
		}
		o.config = func(c *Config) { c.RevocationsFile = file }
	case "signed-list":
		seed, err := identity.NewRevocationKey()
		if err != nil {
			b.Fatal(err)
		}
		pub, _ := identity.RevocationPublicKey(seed)
		o.stack = inproc.Options{
			BrokerConfig: func(c *broker.Config) { c.Revocations, c.RevocationsKey = nil, pub },
			WorkerConfig: func(c *tokenworker.Config) { c.Revocations, c.RevocationsKey = workers, pub },
		}
		o.serviceRole = topics.RoleConsole
		o.config = func(c *Config) { c.RevocationKey = seed }
	}
	e := newEnv(b, o)
	bg := context.Background()
	var set, worker, brk []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		id := fmt.Sprintf("bench-%d", i)
		e.kit(id)
		disconnects := e.stack.BrokerStats().RevokedDisconnects
		b.StartTimer()
		start := time.Now()
		if err := e.console.SetRevoked(bg, id, true); err != nil {
			b.Fatal(err)
		}
		set = append(set, time.Since(start))
		var w, br time.Duration
		for w == 0 || br == 0 {
			if w == 0 && workers.Revoked(id) {
				w = time.Since(start)
			}
			if br == 0 && e.stack.BrokerStats().RevokedDisconnects > disconnects {
				br = time.Since(start)
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s: not revoked everywhere after a minute (worker %v, broker %v)", id, w, br)
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		worker, brk = append(worker, w), append(brk, br)
		e.closeKit(id)
		b.StartTimer()
	}
	b.StopTimer()
	ms := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(set), "setrevoked-ms")
	b.ReportMetric(ms(worker), "worker-ms")
	b.ReportMetric(ms(brk), "broker-ms")
	b.ReportMetric(0, "ns/op")
}
