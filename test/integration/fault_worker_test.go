package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

// faultAsk asks every kit for credentials at once and sends each result on the channel
// returned (one per kit, in completion order).
func faultAsk(ctx context.Context, kits []*devicekit.Kit) <-chan error {
	out := make(chan error, len(kits))
	for i, k := range kits {
		go func() {
			c, err := k.Credentials(ctx)
			if err == nil && c.AccessKeyID == "" {
				err = fmt.Errorf("kit %d: empty credentials", i)
			}
			out <- err
		}()
	}
	return out
}

// faultCollect waits for n results; it fails the test on the first error.
func faultCollect(ctx context.Context, t *testing.T, results <-chan error, n int, what string) {
	t.Helper()
	for i := range n {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("%s: device %d of %d: %v", what, i+1, n, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: %d of %d devices still without credentials", what, n-i, n)
		}
	}
}

// TestFaultWorkerStops: token workers stop while devices ask for credentials.
func TestFaultWorkerStops(t *testing.T) {
	t.Parallel()

	// Two workers; six devices ask, and once three have credentials worker 0 is stopped
	// while the other three may still be waiting and ten more ask at the same moment.
	// Every device gets credentials: from worker 1, or from worker 0 before it went.
	t.Run("one of two stops mid-stream", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t, 2*time.Minute)
		stack := inproc.New(t, inproc.Options{Workers: 2})
		fast := func(c *devicekit.Config) { c.RequestTimeout = 2 * time.Second }
		first := startKits(ctx, t, stack, "cam-wa", 6, fast)
		second := startKits(ctx, t, stack, "cam-wb", 10, fast)

		r1 := faultAsk(ctx, first)
		faultCollect(ctx, t, r1, 3, "before the stop")
		stopped := make(chan error, 1)
		go func() { stopped <- stack.StopWorker(0) }()
		r2 := faultAsk(ctx, second)
		faultCollect(ctx, t, r1, 3, "first wave")
		faultCollect(ctx, t, r2, 10, "second wave, during the stop")
		if err := <-stopped; err != nil {
			t.Fatalf("StopWorker: %v", err)
		}
		if _, running := stack.WorkerStats(0); running {
			t.Error("worker 0 still running")
		}
		st1, ok := stack.WorkerStats(1)
		if !ok || st1.OK == 0 {
			t.Errorf("worker 1: %+v (running %v); want it to have issued credentials", st1, ok)
		}
		// And the survivor alone serves a device that asks now.
		late := startKits(ctx, t, stack, "cam-wc", 1, fast)
		faultCollect(ctx, t, faultAsk(ctx, late), 1, "after the stop")
		// At least 1: on a busy machine the kit may time out (2 s) and ask again, and the
		// worker answers both requests (the second from its cache).
		if st, _ := stack.WorkerStats(1); st.OK < st1.OK+1 {
			t.Errorf("worker 1 issued %d credentials after the stop, want at least 1", st.OK-st1.OK)
		}
	})

	// One worker, stopped: six devices ask while no worker runs (an admin client sees
	// each request arrive at the broker, unanswered). The worker is started again and
	// every device gets credentials from it, within its own retries.
	t.Run("the only one stops and returns", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t, 2*time.Minute)
		stack := inproc.New(t, inproc.Options{Workers: 1})
		const devices = 6
		kits := startKits(ctx, t, stack, "cam-wr", devices, func(c *devicekit.Config) {
			c.RequestTimeout = 2 * time.Second
		})
		watcher, err := connectService(ctx, stack, topics.RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		defer watcher.close()
		scheme := stack.Topics()
		watcher.mustSubscribe(ctx, t, scheme.Root()+"/devices/+/auth/request")

		if err := stack.StopWorker(0); err != nil {
			t.Fatal(err)
		}
		results := faultAsk(ctx, kits)
		asked := map[string]bool{}
		watched := watcher.stream(ctx)
		for len(asked) < devices {
			select {
			case m := <-watched:
				if kind, dev, ok := scheme.Parse(m.topic); ok && kind == topics.KindAuthRequest {
					asked[dev] = true
				}
			case err := <-results:
				t.Fatalf("a device got an answer with no worker running: %v", err)
			case <-ctx.Done():
				t.Fatalf("only %d of %d devices asked", len(asked), devices)
			}
		}
		if stack.Workers() != 0 {
			t.Fatalf("%d workers running, want none", stack.Workers())
		}
		i, err := stack.StartWorker()
		if err != nil {
			t.Fatal(err)
		}
		faultCollect(ctx, t, results, devices, "after the worker returned")
		// Every device was served by the restarted worker, the only one running; a device
		// whose request timed out (2 s) on a busy machine asked again and was answered
		// twice, so the worker's count is at least, not exactly, one per device.
		st, ok := stack.WorkerStats(i)
		if !ok || st.OK < devices {
			t.Errorf("the restarted worker issued %d credentials (running %v), want at least %d", st.OK, ok, devices)
		}
	})
}
