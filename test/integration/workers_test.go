package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// startKits connects n kits at once (device IDs prefix-00, prefix-01, ...); they close
// when the test ends.
func startKits(ctx context.Context, t *testing.T, stack *inproc.Stack, prefix string, n int, mod func(*devicekit.Config)) []*devicekit.Kit {
	t.Helper()
	kits := make([]*devicekit.Kit, n)
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		g.Go(func() error {
			k, err := startKit(gctx, stack, fmt.Sprintf("%s-%02d", prefix, i), mod)
			kits[i] = k
			return err
		})
	}
	err := g.Wait()
	for _, k := range kits {
		if k != nil {
			t.Cleanup(func() { k.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return kits
}

// askAll runs Credentials on every kit at once and returns the results in kit order.
func askAll(ctx context.Context, kits []*devicekit.Kit) ([]*devicekit.Credentials, error) {
	creds := make([]*devicekit.Credentials, len(kits))
	g, gctx := errgroup.WithContext(ctx)
	for i, k := range kits {
		g.Go(func() error {
			c, err := k.Credentials(gctx)
			if err != nil {
				return fmt.Errorf("kit %d: %w", i, err)
			}
			creds[i] = c
			return nil
		})
	}
	return creds, g.Wait()
}

// checkDistinct fails the test unless every device got complete credentials of its own.
func checkDistinct(t *testing.T, creds []*devicekit.Credentials) {
	t.Helper()
	seen := map[string]bool{}
	for i, c := range creds {
		if c == nil || !strings.HasPrefix(c.AccessKeyID, "STS.") || c.AccessKeySecret == "" || c.SecurityToken == "" || !c.Expiration.After(time.Now()) {
			t.Errorf("kit %d: credentials %+v", i, c)
			continue
		}
		if seen[c.AccessKeyID] {
			t.Errorf("kit %d: access key %s handed to two devices", i, c.AccessKeyID)
		}
		seen[c.AccessKeyID] = true
	}
}

// TestWorkersShareRequests: two token workers in the shared-subscription group both
// answer requests.
func TestWorkersShareRequests(t *testing.T) {
	t.Parallel()
	const devices = 20
	ctx := testContext(t, 2*time.Minute)
	stack := inproc.New(t, inproc.Options{Workers: 2})
	kits := startKits(ctx, t, stack, "cam-share", devices, nil)
	creds, err := askAll(ctx, kits)
	if err != nil {
		t.Fatal(err)
	}
	checkDistinct(t, creds)
	var total uint64
	for i := range 2 {
		st, ok := stack.WorkerStats(i)
		if !ok {
			t.Fatalf("worker %d is not running", i)
		}
		if st.OK == 0 {
			t.Errorf("worker %d answered no request: %+v", i, st)
		}
		total += st.OK
		t.Logf("worker %d: %d requests, %d ok", i, st.Requests, st.OK)
	}
	if total != devices {
		t.Errorf("the workers issued %d credentials for %d devices", total, devices)
	}
}

// stsGate is a loopback HTTP proxy in front of the local STS that holds every call until
// it is opened.
type stsGate struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]
	held   atomic.Int64
	first  chan struct{} // closed at the first held call
	open   chan struct{}
	once   sync.Once
}

func newSTSGate(t *testing.T) *stsGate {
	g := &stsGate{first: make(chan struct{}), open: make(chan struct{})}
	var firstOnce sync.Once
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(g.target.Load())
		pr.Out.Host = pr.In.Host
	}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.held.Add(1)
		firstOnce.Do(func() { close(g.first) })
		select {
		case <-g.open:
		case <-r.Context().Done():
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		g.release()
		g.srv.Close()
	})
	return g
}

func (g *stsGate) release() { g.once.Do(func() { close(g.open) }) }

// TestStopWorkerLosesNone: ten devices ask for credentials while one of two workers is
// stopped. The stopped worker has requests in hand when it goes (its STS calls are held
// at a gate, so that this is certain rather than likely); it answers them "unavailable"
// and the devices retry on the other worker. Every device gets credentials, all from the
// surviving worker, before the gate opens.
func TestStopWorkerLosesNone(t *testing.T) {
	t.Parallel()
	const devices = 10
	ctx := testContext(t, 2*time.Minute)
	gate := newSTSGate(t)
	var started atomic.Int32
	stack := inproc.New(t, inproc.Options{
		Workers: 2,
		WorkerConfig: func(c *tokenworker.Config) {
			if started.Add(1) != 1 {
				return
			}
			// Worker 0 (started first) calls STS through the gate.
			gate.target.Store(&url.URL{Scheme: "http", Host: c.STS.Endpoint})
			c.STS.Endpoint = strings.TrimPrefix(gate.srv.URL, "http://")
		},
	})
	kits := startKits(ctx, t, stack, "cam-stop", devices, func(c *devicekit.Config) {
		c.RequestTimeout = 3 * time.Second // a request lost with the worker is retried soon
	})

	type result struct {
		creds []*devicekit.Credentials
		err   error
	}
	done := make(chan result, 1)
	go func() {
		creds, err := askAll(ctx, kits)
		done <- result{creds, err}
	}()

	select {
	case <-gate.first:
	case <-ctx.Done():
		t.Fatal("worker 0 never called STS")
	}
	before, ok := stack.WorkerStats(0)
	if !ok || before.Requests == 0 {
		t.Fatalf("worker 0: %+v, running %v; want requests in hand", before, ok)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stack.StopWorker(0) }()

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("devices still waiting for credentials")
	}
	held := gate.held.Load()
	gate.release() // only now: nothing above depended on worker 0's STS calls
	if res.err != nil {
		t.Fatal(res.err)
	}
	checkDistinct(t, res.creds)
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("StopWorker: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("StopWorker did not return")
	}
	if _, ok := stack.WorkerStats(0); ok {
		t.Error("worker 0 still reported running after StopWorker")
	}
	st1, ok := stack.WorkerStats(1)
	if !ok {
		t.Fatal("worker 1 is not running")
	}
	if st1.OK != devices {
		t.Errorf("worker 1 issued %d credentials, want all %d (worker 0's were held at the gate)", st1.OK, devices)
	}
	t.Logf("worker 0 had %d requests, %d STS calls held; worker 1: %+v", before.Requests, held, st1)
}
