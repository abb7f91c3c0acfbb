package devicekit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// Twenty cameras ask for credentials at the same instant while STS issues two a second.
// The refused ones are told to come back (busy or unavailable with retryAfterMs) and do,
// spread out rather than together, so every one gets credentials in the end and the
// workers see a bounded number of requests: no retry storm.
func TestSTSThrottlingNoRetryStorm(t *testing.T) {
	t.Parallel()
	const devices = 20
	stack := inproc.New(t, inproc.Options{
		STSRate: 2,
		WorkerConfig: func(c *tokenworker.Config) {
			c.ReuseMargin = -1 // every request goes to STS: only the device's backoff protects it
		},
	})
	kits := make([]*devicekit.Kit, devices)
	for i := range kits {
		k, err := devicekit.New(stack.DeviceConfig(fmt.Sprintf("cam-throttle-%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err = k.Connect(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		kits[i] = k
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := make(chan struct{})
	errs := make([]error, devices)
	var wg sync.WaitGroup
	for i, k := range kits {
		wg.Go(func() {
			<-start
			c, err := k.Credentials(ctx)
			if err == nil && c.SecurityToken == "" {
				err = errors.New("credentials without a security token")
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("device %d: %v", i, err)
		}
	}

	st, ok := stack.WorkerStats(0)
	if !ok {
		t.Fatal("no worker stats")
	}
	refused := st.Errors[clipgate.CodeBusy] + st.Errors[clipgate.CodeUnavailable]
	t.Logf("worker: %d requests, %d STS calls, %d OK, %d busy, %d unavailable", st.Requests, st.STSCalls, st.OK,
		st.Errors[clipgate.CodeBusy], st.Errors[clipgate.CodeUnavailable])
	if st.OK != devices {
		t.Errorf("%d credentials issued, want %d", st.OK, devices)
	}
	if refused == 0 {
		t.Error("no busy or unavailable replies: the STS rate limit was not reached")
	}
	if st.Requests >= 5*devices {
		t.Errorf("%d requests for %d devices: a retry storm", st.Requests, devices)
	}
	for code, n := range st.Errors {
		if code != clipgate.CodeBusy && code != clipgate.CodeUnavailable && n > 0 {
			t.Errorf("%d unexpected %s replies", n, code)
		}
	}
}
