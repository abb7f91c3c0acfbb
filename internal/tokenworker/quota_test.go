package tokenworker

import (
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/protocol"
)

// A device over its upload quota gets no write or append credentials until the reset
// (quota_exceeded, retryAfterMs the time left, at most a day); it still gets read
// credentials, and other devices are not affected.
func TestHandleQuotaExceeded(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	var mu sync.Mutex
	resets := map[string]time.Duration{"cam-day": 2 * time.Hour, "cam-month": 9 * 24 * time.Hour}
	cfg.Quota = func(device string, now time.Time) time.Time {
		mu.Lock()
		defer mu.Unlock()
		if d, ok := resets[device]; ok {
			return now.Add(d)
		}
		return time.Time{}
	}
	w := newWorker(t, cfg)

	for _, tc := range []struct {
		device, mode string
		wait         time.Duration
	}{
		{"cam-day", "w", 2 * time.Hour},
		{"cam-day", "a", 2 * time.Hour},
		{"cam-day", "rw", 2 * time.Hour},
		{"cam-month", "w", 24 * time.Hour}, // capped at a day: the device asks again then
	} {
		r := newRequest(t, fleet, tc.device, tc.mode, time.Now())
		rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeQuotaExceeded)
		if got := rep.Error.RetryAfter(); got != tc.wait {
			t.Errorf("%s mode %s: retryAfter %v, want %v", tc.device, tc.mode, got, tc.wait)
		}
	}
	for _, tc := range []struct{ device, mode string }{{"cam-day", "r"}, {"cam-free", "w"}} {
		r := newRequest(t, fleet, tc.device, tc.mode, time.Now())
		openCredentials(t, r, decodeReply(t, r.ID, handle(t, w, r)))
	}
	if st := w.Stats(); st.Errors[protocol.CodeQuotaExceeded] != 4 {
		t.Errorf("quota_exceeded counted %d times, want 4", st.Errors[protocol.CodeQuotaExceeded])
	}
}
