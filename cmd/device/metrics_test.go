package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/ops/opstest"
)

// TestWatchMetrics runs device watch with --metrics-addr against a stack: after one clip,
// /metrics counts one upload of its size and one credentials refresh, and /readyz is 200.
func TestWatchMetrics(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	const device = "cam-metrics"
	dir := t.TempDir()
	w := &watchRun{code: make(chan int, 1)}
	addr := make(chan string, 1)
	m := &Main{Stdout: &w.stdout, Stderr: &w.stderr, WorkDir: t.TempDir(),
		Getenv:     func(string) (string, bool) { return "", false },
		IsTerminal: func(io.Writer) bool { return false },
		onOpsAddr:  func(a string) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		w.code <- m.Run(ctx, []string{"--config", s.device(t, device), "watch", dir, "--settle", "100ms",
			"--poll-interval", "20ms", "--metrics-addr", "127.0.0.1:0"})
	}()
	t.Cleanup(func() { w.stop(t) })
	var ops string
	select {
	case ops = <-addr:
	case <-time.After(watchTimeout):
		t.Fatalf("no metrics endpoint\nstderr:\n%s", w.stderr.String())
	}

	path := filepath.Join(dir, "clip.mp4")
	renameInto(t, dir, "clip.mp4", 3000)
	w.waitLine(t, okLineFor(path))
	metrics := opstest.Scrape(t, ops)
	for series, want := range map[string]float64{
		"clipgate_device_uploads_total":              1,
		"clipgate_device_uploaded_bytes_total":       3000,
		"clipgate_device_credential_refreshes_total": 1,
		"clipgate_device_spool_backlog_clips":        0,
	} {
		if got := metrics.Get(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if status, rep := opstest.Health(t, ops, "/readyz"); status != 200 || rep.Service != "device" || len(rep.Checks) != 1 {
		t.Errorf("/readyz: %d %+v", status, rep)
	}
	if code := w.stop(t); code != 0 {
		t.Errorf("exit %d\nstderr:\n%s", code, w.stderr.String())
	}
}
