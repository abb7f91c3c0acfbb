package devicekit

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// A device over its upload quota: Upload fails with quota_exceeded at once (no retries
// for hours), a Spool keeps the clip and tries again, reading still works, and once the
// quota resets the clip goes.
func TestQuotaKeepsClipsSpooled(t *testing.T) {
	t.Parallel()
	var over atomic.Bool
	over.Store(true)
	s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) {
		c.Quota = func(device string, now time.Time) time.Time {
			if over.Load() && device == "cam-quota" {
				return now.Add(3 * time.Hour)
			}
			return time.Time{}
		}
	}})
	s.consume()
	k := s.kit("cam-quota", nil)

	path, _ := clipFile(t, "direct.mp4", 1000)
	_, err := k.Upload(t.Context(), Clip{Path: path})
	var ae *clipgate.AuthError
	if !errors.As(err, &ae) || ae.Code != clipgate.CodeQuotaExceeded || ae.RetryAfter != 3*time.Hour {
		t.Fatalf("Upload over quota = %v, want quota_exceeded with retryAfter 3h", err)
	}
	if st := s.worker.Stats(); st.Requests != 1 {
		t.Errorf("%d credentials requests for one refused upload, want 1 (no retries)", st.Requests)
	}
	s.noEvent()

	// Reading is still allowed: an object written before (by the admin) reads back.
	own := "clips/cam-quota/2026/01/01/old.mp4"
	if err := s.adminBucket().PutObject(own, bytes.NewReader([]byte("before the quota"))); err != nil {
		t.Fatal(err)
	}
	r, err := k.Open(t.Context(), own)
	if err != nil {
		t.Fatalf("Open over quota: %v", err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "before the quota" {
		t.Errorf("read over quota: %q, %v", b, err)
	}
	r.Close()

	dir := t.TempDir()
	data := randomBytes(t, 2000)
	if err := os.WriteFile(filepath.Join(dir, "spooled.mp4"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	retries := make(chan error, 16)
	uploaded := make(chan SpoolEvent, 1)
	sp, err := NewSpool(k, SpoolConfig{Dir: dir, Settle: time.Millisecond, PollInterval: 10 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, OnEvent: func(e SpoolEvent) {
			switch e.Kind {
			case SpoolRetry:
				select {
				case retries <- e.Err:
				default:
				}
			case SpoolUploaded:
				uploaded <- e
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sp.Run(t.Context()) }()
	t.Cleanup(func() { <-done }) // before the kit closes
	// Two attempts refused, the clip still there.
	for range 2 {
		select {
		case err := <-retries:
			if !errors.As(err, &ae) || ae.Code != clipgate.CodeQuotaExceeded {
				t.Fatalf("spool retry for %v, want quota_exceeded", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no refused attempt")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "spooled.mp4")); err != nil {
		t.Fatalf("the clip left the spool while over quota: %v", err)
	}
	over.Store(false) // the quota resets
	select {
	case e := <-uploaded:
		if e.Event == nil || e.Event.Status != clipgate.StatusCompleted || !bytes.Equal(s.object(e.Event.Key), data) {
			t.Errorf("after the reset: %+v", e.Event)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the clip was not uploaded after the reset")
	}
	if ev := s.event(); ev.Status != clipgate.StatusCompleted || ev.Metadata["file"] != "spooled.mp4" {
		t.Errorf("event %+v", ev)
	}
}
