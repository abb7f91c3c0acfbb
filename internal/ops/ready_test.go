package ops_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// TestReadyzFollowsDependencies takes the local cloud (STS and OSS) away from a token
// worker and a console and brings it back: their /readyz turns 503, naming the failed
// dependency, and 200 again. Each check runs when /readyz is asked, so the server's
// Close and Start returning are the synchronisation: no waiting.
func TestReadyzFollowsDependencies(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{}) // the broker the worker connects to

	cloudCfg := localcloud.Config{DataDir: filepath.Join(t.TempDir(), "cloud")}
	dev, err := localcloud.ApplyDevDefaults(&cloudCfg)
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := localcloud.Start(cloudCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	// The restart listens where the first one did.
	cloudCfg.OSSAddr, cloudCfg.STSAddr = cloud.OSSEndpoint()[len("http://"):], cloud.STSEndpoint()

	user, pw := stack.ServiceAccount(topics.RoleTokenWorker)
	worker, err := tokenworker.New(tokenworker.Config{
		BrokerURL: stack.BrokerURL(), Username: user, Password: pw, ClientID: "tokenworker:ready",
		Topics: stack.Topics(), FleetKeys: stack.FleetKeys(),
		STS: tokenworker.STSConfig{Endpoint: cloud.STSEndpoint(), Scheme: "http", Region: cloud.Region(),
			AccessKeyID: dev.Key.ID, AccessKeySecret: dev.Key.Secret, RoleARN: cloud.RoleARN(dev.Role)},
		OSS: clipgate.OSSInfo{Endpoint: cloud.OSSEndpoint(), Region: cloud.Region(), Bucket: dev.Bucket, Prefix: "clips/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Close() })
	if err := worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	workerOps := serve(t, "tokenworker", tokenworker.ReadyChecks([]*tokenworker.Worker{worker}))

	db, err := console.Open(ctx, filepath.Join(t.TempDir(), "console.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	client, err := oss.New(cloud.OSSEndpoint(), dev.Key.ID, dev.Key.Secret, oss.ForcePathStyle(true),
		oss.AuthVersion(oss.AuthV4), oss.Region(cloud.Region()))
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(dev.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("operator password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Config{Store: db, Bucket: bucket, Prefix: "clips/", Addr: "127.0.0.1:0", PasswordHash: string(hash)})
	if err != nil {
		t.Fatal(err)
	}
	consoleOps := serve(t, "console", con.ReadyChecks())

	want := func(addr string, status int, failed ...string) {
		t.Helper()
		got, rep := opstest.Health(t, addr, "/readyz")
		fails := map[string]bool{}
		for _, c := range rep.Checks {
			if c.Status != ops.StatusOK {
				if c.Error == "" {
					t.Errorf("%s: check %s failed without saying why", rep.Service, c.Name)
				}
				fails[c.Name] = true
			}
		}
		if got != status || len(fails) != len(failed) {
			t.Fatalf("%s /readyz: %d %+v; want %d with %v failing", rep.Service, got, rep, status, failed)
		}
		for _, f := range failed {
			if !fails[f] {
				t.Fatalf("%s /readyz: %+v; want %s failing", rep.Service, rep, f)
			}
		}
		if s, live := opstest.Health(t, addr, "/healthz"); s != http.StatusOK || live.Status != ops.StatusOK || live.Service != rep.Service {
			t.Fatalf("%s /healthz: %d %+v", rep.Service, s, live)
		}
	}
	want(workerOps.Addr(), http.StatusOK)
	want(consoleOps.Addr(), http.StatusOK)

	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}
	want(workerOps.Addr(), http.StatusServiceUnavailable, "sts")
	want(consoleOps.Addr(), http.StatusServiceUnavailable, "oss")

	if cloud, err = localcloud.Start(cloudCfg); err != nil {
		t.Fatal(err)
	}
	want(workerOps.Addr(), http.StatusOK)
	want(consoleOps.Addr(), http.StatusOK)
}

// TestReadyzBrokenChecks: a check that does not return in time fails /readyz with the
// context's error, and a panicking check fails it too, without taking the endpoint down.
func TestReadyzBrokenChecks(t *testing.T) {
	t.Parallel()
	s := serve(t, "x", []ops.Check{
		{Name: "slow", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{Name: "panics", Run: func(context.Context) error { panic("boom") }},
		{Name: "fine", Run: func(context.Context) error { return nil }},
	})
	status, rep := opstest.Health(t, s.Addr(), "/readyz")
	if status != http.StatusServiceUnavailable || rep.Status != ops.StatusUnavailable || len(rep.Checks) != 3 {
		t.Fatalf("%d %+v", status, rep)
	}
	for i, want := range []struct{ name, status, err string }{
		{"fine", ops.StatusOK, ""}, {"panics", ops.StatusFail, "check panicked: boom"}, {"slow", ops.StatusFail, "context deadline exceeded"},
	} {
		if c := rep.Checks[i]; c.Name != want.name || c.Status != want.status || c.Error != want.err {
			t.Errorf("check %d: %+v, want %+v", i, c, want)
		}
	}
}
