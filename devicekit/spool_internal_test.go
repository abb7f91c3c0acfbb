package devicekit

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
)

func TestFileMetadata(t *testing.T) {
	t.Parallel()
	m := fileMetadata("bad\xff" + strings.Repeat("é", 300))
	v := m["file"]
	if len(v) > protocol.MaxMetadataLen || !strings.HasPrefix(v, "bad\uFFFD") || !utf8.ValidString(v) {
		t.Errorf("metadata %q (%d bytes)", v, len(v))
	}
	ev := clipgate.UploadEvent{V: 1, ID: "x", Device: "cam-01", Status: clipgate.StatusFailed, Error: "e", Metadata: m}
	if err := protocol.ValidateUploadEvent(&ev); err != nil {
		t.Error(err)
	}
}

func TestTempName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		".clip.mp4": true, "clip.mp4.tmp": true, "clip.part": true, "clip.mp4": false, "tmp": false, "part.mp4": false,
	} {
		if tempName(name) != want {
			t.Errorf("tempName(%q) = %v", name, !want)
		}
	}
}

func TestFormatBytesAndDuration(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 2 << 30: "2 GiB", 25000: "24.4 KiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 5 * time.Minute: "5m", 90 * time.Second: "1m30s", 90 * time.Millisecond: "90ms"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// The backoff grows from RetryMin, stays within [window/2, window], never exceeds
// RetryMax, and honours a worker's retryAfter up to RetryMax.
func TestSpoolBackoff(t *testing.T) {
	t.Parallel()
	s := &Spool{cfg: SpoolConfig{RetryMin: time.Second, RetryMax: time.Minute}}
	for failures := 1; failures <= 70; failures++ {
		s.failures = failures
		window := time.Minute
		if failures <= 6 {
			window = time.Second << (failures - 1)
		}
		for range 20 {
			if d := s.backoff(nil); d < window/2 || d > window {
				t.Fatalf("failures %d: %v outside [%v, %v]", failures, d, window/2, window)
			}
		}
	}
	s.failures = 1
	if d := s.backoff(&clipgate.AuthError{Code: clipgate.CodeBusy, RetryAfter: 10 * time.Second}); d != 10*time.Second {
		t.Errorf("retryAfter 10s: waited %v", d)
	}
	if d := s.backoff(&clipgate.AuthError{Code: clipgate.CodeBusy, RetryAfter: time.Hour}); d != time.Minute {
		t.Errorf("retryAfter 1h: waited %v, want RetryMax", d)
	}
}
