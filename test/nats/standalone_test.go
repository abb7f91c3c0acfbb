package nats_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/inproc"
)

// buildServer builds nats-server from the module go.mod pins.
func buildServer(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// TestStandaloneSIGKILL runs the cluster as three nats-server processes built from the
// module, and kills one with SIGKILL (a hard crash: nothing flushed, no goodbye to the
// routes or clients) while 10 devices upload. Every upload the kits reported done is
// indexed once, and the devices carry on while the node is down and after it is back.
func TestStandaloneSIGKILL(t *testing.T) {
	t.Parallel()
	bin := buildServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, NATSBinary: bin, Workers: 2})
	c, db := startConsole(t, ctx, s)
	cl := s.Cluster()
	const devices = 10
	f := startFleet(t, ctx, s, devices)
	f.progress("start", devices)
	if f.onNode(s, 0) == 0 {
		t.Fatal("no device connects to node 0 first")
	}
	t.Logf("SIGKILL node 0 after %d uploads", f.done.Load())
	cl.Kill(0)
	f.progress("node 0 killed", devices)
	if err := cl.Restart(0); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitMetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	f.progress("node 0 back", devices)
	f.check(c, db)
}
