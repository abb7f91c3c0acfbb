package main

import (
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/testutil"
)

// fakeResults is a results on a terminal with a clock the test moves.
func fakeResults(every time.Duration) (*results, *testutil.SyncBuffer, *time.Time) {
	var out testutil.SyncBuffer
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &results{w: &out, live: true, now: func() time.Time { return now }, every: every}
	return r, &out, &now
}

// lastStatus is the status line on screen: the text after the last line clearing.
func lastStatus(out string) string {
	return out[strings.LastIndex(out, clearLine)+len(clearLine):]
}

// The status line shows the bytes of the file, its rate and the time left (issue 9,
// point 5: the bar counted whole files, and sat at 0% for the whole of a large clip).
func TestStatusLine(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	r, out, now := fakeResults(100 * time.Millisecond)
	progress := r.start(0, 2, "front-door.mp4", 24*mib)
	if progress == nil {
		t.Fatal("no progress callback on a terminal")
	}
	if got := lastStatus(out.String()); got != "[1/2] front-door.mp4  0 B / 24 MiB  0%" {
		t.Errorf("at start: %q", got)
	}
	progress(0, 24*mib)
	*now = now.Add(2 * time.Second)
	progress(8*mib, 24*mib)
	if got, want := lastStatus(out.String()), "[1/2] front-door.mp4  8.0 MiB / 24 MiB  33%  4.0 MiB/s  4s left"; got != want {
		t.Errorf("mid-file: %q, want %q", got, want)
	}
	// Reports closer together than every are not drawn, but the last one is.
	drawn := out.String()
	*now = now.Add(10 * time.Millisecond)
	progress(9*mib, 24*mib)
	if out.String() != drawn {
		t.Errorf("drawn again after 10ms: %q", lastStatus(out.String()))
	}
	progress(24*mib, 24*mib)
	if got := lastStatus(out.String()); !strings.HasPrefix(got, "[1/2] front-door.mp4  24 MiB / 24 MiB  100%  ") || strings.Contains(got, "left") {
		t.Errorf("at the end: %q", got)
	}
	r.line("ok  front-door.mp4 -> oss://b/k")
	if !strings.HasSuffix(out.String(), clearLine+"ok  front-door.mp4 -> oss://b/k\n") {
		t.Errorf("the result line does not replace the status line: %q", out.String())
	}
	// A late report of the finished file draws nothing.
	after := out.String()
	progress(3, 24*mib)
	if out.String() != after {
		t.Errorf("a late report was drawn: %q", out.String()[len(after):])
	}

	// A resumed upload: the rate counts only what this run sends.
	progress = r.start(1, 2, "b.mp4", 10*mib)
	progress(6*mib, 10*mib) // stored before
	*now = now.Add(time.Second)
	progress(7*mib, 10*mib)
	if got, want := lastStatus(out.String()), "[2/2] b.mp4  7.0 MiB / 10 MiB  70%  1.0 MiB/s  3s left"; got != want {
		t.Errorf("resumed: %q, want %q", got, want)
	}
	// Sent going down (a failed part to send again) is shown as it is.
	*now = now.Add(time.Second)
	progress(6*mib+mib/2, 10*mib)
	if got := lastStatus(out.String()); !strings.Contains(got, "6.5 MiB / 10 MiB  65%") {
		t.Errorf("after a failed part: %q", got)
	}
	r.finish()
	if !strings.HasSuffix(out.String(), clearLine) {
		t.Error("finish left the status line")
	}

	// Not a terminal: no status line, plain result lines.
	var plain testutil.SyncBuffer
	p := &results{w: &plain, now: time.Now, every: drawEvery}
	if cb := p.start(0, 1, "a.mp4", 100); cb != nil {
		t.Error("a progress callback without a terminal")
	}
	p.line("ok  a")
	p.finish()
	if plain.String() != "ok  a\n" {
		t.Errorf("plain output %q", plain.String())
	}
}

// A multipart upload on a terminal shows its bytes as they go; Ctrl-C mid-upload says
// that the same command resumes it (issue 9, point 5: it printed the SDK's error with the
// request's URL), and the same command does resume it.
func TestUploadProgressAndInterrupt(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	const part = 100 << 10
	cfg := s.device(t, "cam-interrupt")
	dir := t.TempDir()
	big := writeClip(t, dir, "big.mp4", 30*part+123, testTime)
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--part-size", "100KiB", "--multipart-threshold", "100KiB", "upload", big}

	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	var once sync.Once
	m := &Main{IsTerminal: func(io.Writer) bool { return true }, drawAll: true}
	m.onProgress = func(sent, total int64) {
		if sent > 3*part { // more than the parts in flight: at least one is stored
			once.Do(interrupt)
		}
	}
	code, stdout, stderr := runCtx(t, ctx, m, nil, args...)
	if code != cli.ExitFailure {
		t.Fatalf("interrupted upload: exit %d\nstdout:\n%q\nstderr:\n%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`\[1/1\] big\.mp4  [0-9.]+ [KM]iB / 2\.9 MiB  ([1-9]|[1-9][0-9])%`).MatchString(stdout) {
		t.Errorf("no status line with the file's bytes mid-upload:\n%q", stdout)
	}
	if !strings.Contains(stdout, "FAIL "+big+": interrupted; running the same command again resumes the upload\n") ||
		!strings.Contains(stderr, "run the same command again") {
		t.Errorf("the interruption does not say how to resume:\nstdout:\n%q\nstderr:\n%s", stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "http://") || strings.Contains(stdout+stderr, "uploadId") {
		t.Errorf("a raw request URL is printed:\nstdout:\n%q\nstderr:\n%s", stdout, stderr)
	}

	// The same command again resumes: its first report counts the parts already stored.
	var mu sync.Mutex
	first := int64(-1)
	again := &Main{IsTerminal: func(io.Writer) bool { return true }}
	again.onProgress = func(sent, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if first < 0 {
			first = sent
		}
	}
	code, stdout, stderr = runWith(t, again, nil, args...)
	m2 := okLineFor(big).FindStringSubmatch(lastStatus(strings.TrimSuffix(stdout, "\n")))
	if code != cli.ExitOK || m2 == nil {
		t.Fatalf("the same command again: exit %d\nstdout:\n%q\nstderr:\n%s", code, stdout, stderr)
	}
	checkObject(t, s, m2[2], data)
	mu.Lock()
	defer mu.Unlock()
	if first < part {
		t.Errorf("the second run started at %d bytes: it did not resume", first)
	}
}
