package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
)

// watchTimeout bounds every wait of the watch tests.
const watchTimeout = time.Minute

// watchRun is `device watch` running in-process.
type watchRun struct {
	stdout, stderr testutil.SyncBuffer
	cancel         context.CancelFunc
	code           chan int
}

// startWatch runs the command with args until stop (or the end of the test).
func startWatch(t *testing.T, args ...string) *watchRun {
	t.Helper()
	w := &watchRun{code: make(chan int, 1)}
	m := &Main{Stdout: &w.stdout, Stderr: &w.stderr, WorkDir: t.TempDir(),
		Getenv:     func(string) (string, bool) { return "", false },
		IsTerminal: func(io.Writer) bool { return false }}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.code <- m.Run(ctx, args) }()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop interrupts the command (as SIGINT does) and returns its exit status.
func (w *watchRun) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	select {
	case code, ok := <-w.code:
		if ok {
			close(w.code)
		}
		return code
	case <-time.After(watchTimeout):
		t.Fatal("watch did not stop")
		return -1
	}
}

// waitLine waits for a stdout line matching re and returns its submatches.
func (w *watchRun) waitLine(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(watchTimeout)
	for {
		for _, line := range strings.Split(w.stdout.String(), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %s\nstdout:\n%s\nstderr:\n%s", re, w.stdout.String(), w.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dropLine matches a DROP line and captures file, event ID and reason.
var dropLine = regexp.MustCompile(`^DROP (.+) event=([A-Za-z0-9_-]+): (dropped: .+)$`)

// okLineFor matches the ok line of one file.
func okLineFor(path string) *regexp.Regexp {
	return regexp.MustCompile(`^ok  ` + regexp.QuoteMeta(path) + ` -> oss://([a-z0-9-]+)/(.+?) size=(\d+) crc64=(\d+) event=([A-Za-z0-9_-]+)$`)
}

// renameInto writes data under a temporary name in dir and renames it to name.
func renameInto(t *testing.T, dir, name string, n int) []byte {
	t.Helper()
	tmp := writeClip(t, dir, "."+name+".part", n, time.Now())
	data, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return data
}

// events collects the upload events of one device from a consumer.
type events struct {
	mu   sync.Mutex
	list []*protocol.UploadEvent
}

func consumeDevice(t *testing.T, s *stack, device string) *events {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchTimeout)
	defer cancel()
	c, err := s.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &events{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range c.Events() {
			if ev.Device == device {
				e.mu.Lock()
				e.list = append(e.list, ev)
				e.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return e
}

// wait waits for the event with this ID.
func (e *events) wait(t *testing.T, id string) *protocol.UploadEvent {
	t.Helper()
	deadline := time.Now().Add(watchTimeout)
	for {
		e.mu.Lock()
		for _, ev := range e.list {
			if ev.ID == id {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("event %s did not arrive", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkObject checks that key holds data.
func checkObject(t *testing.T, s *stack, key string, data []byte) {
	t.Helper()
	r, err := s.bucket(t).GetObject(key)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object %s: %d bytes (%v), want the clip's %d", key, len(got), err, len(data))
	}
}

func TestWatchAgainstStack(t *testing.T) {
	t.Parallel()
	s := startStack(t)

	t.Run("UploadsAndRemoves", func(t *testing.T) {
		t.Parallel()
		const device = "cam-watch"
		evs := consumeDevice(t, s, device)
		dir := t.TempDir()
		w := startWatch(t, "--config", s.device(t, device), "watch", dir, "--settle", "100ms", "--poll-interval", "20ms")
		path := filepath.Join(dir, "clip 1.mp4")
		data := renameInto(t, dir, "clip 1.mp4", 3000)
		m := w.waitLine(t, okLineFor(path))
		key, id := m[2], m[5]
		if !strings.HasSuffix(key, "/clip 1.mp4") || m[3] != "3000" {
			t.Errorf("ok line %q", m[0])
		}
		checkObject(t, s, key, data)
		if ev := evs.wait(t, id); ev.Key != key || ev.Status != protocol.StatusCompleted || ev.Metadata["file"] != "clip 1.mp4" {
			t.Errorf("event %+v", ev)
		}
		if _, err := os.Lstat(path); err == nil {
			t.Error("the uploaded clip is still there")
		}
		if code := w.stop(t); code != 0 {
			t.Errorf("exit %d after the interrupt\nstderr:\n%s", code, w.stderr.String())
		}
	})

	t.Run("MovesAside", func(t *testing.T) {
		t.Parallel()
		const device = "cam-watch-move"
		dir := t.TempDir()
		path := writeClip(t, dir, "a.mp4", 2000, time.Now())
		data, _ := os.ReadFile(path)
		w := startWatch(t, "--config", s.device(t, device), "watch", dir, "--settle", "100ms",
			"--poll-interval", "20ms", "--after", "move", "--done-dir", filepath.Join(dir, "uploaded"))
		m := w.waitLine(t, okLineFor(path))
		checkObject(t, s, m[2], data)
		if got, err := os.ReadFile(filepath.Join(dir, "uploaded", "a.mp4")); err != nil || !bytes.Equal(got, data) {
			t.Errorf("moved clip: %v", err)
		}
		if code := w.stop(t); code != 0 {
			t.Errorf("exit %d", code)
		}
		if strings.Contains(w.stdout.String(), "SKIP") {
			t.Errorf("the done directory was reported:\n%s", w.stdout.String())
		}
	})

	t.Run("BoundsAndGarbage", func(t *testing.T) {
		t.Parallel()
		const device = "cam-watch-bounds"
		evs := consumeDevice(t, s, device)
		dir := t.TempDir()
		now := time.Now()
		old := writeClip(t, dir, "old.mp4", 1000, now.Add(-48*time.Hour))
		first := writeClip(t, dir, "first.mp4", 10000, now.Add(-3*time.Minute))
		second := writeClip(t, dir, "second.mp4", 10000, now.Add(-2*time.Minute))
		third := writeClip(t, dir, "third.mp4", 10000, now.Add(-time.Minute))
		empty := writeClip(t, dir, "empty.mp4", 0, now)
		if err := os.Symlink("nowhere", filepath.Join(dir, "link.mp4")); err != nil {
			t.Fatal(err)
		}
		w := startWatch(t, "--config", s.device(t, device), "watch", dir, "--settle", "100ms", "--poll-interval", "20ms",
			"--max-bytes", "25KB", "--max-age", "24h")
		for _, c := range []struct{ path, reason string }{
			{old, "dropped: older than 24h"},
			{first, "dropped: spool over 24.4 KiB"},
		} {
			m := w.waitLine(t, regexp.MustCompile(`^DROP `+regexp.QuoteMeta(c.path)+` event=([A-Za-z0-9_-]+): (.+)$`))
			if !strings.HasPrefix(m[2], c.reason) {
				t.Errorf("drop of %s: %q, want %q", c.path, m[2], c.reason)
			}
			if ev := evs.wait(t, m[1]); ev.Status != protocol.StatusFailed || ev.Error != m[2] {
				t.Errorf("drop event %+v", ev)
			}
		}
		w.waitLine(t, okLineFor(second))
		w.waitLine(t, okLineFor(third))
		m := w.waitLine(t, regexp.MustCompile(`^REJECT `+regexp.QuoteMeta(empty)+` event=([A-Za-z0-9_-]+): rejected: empty file`))
		evs.wait(t, m[1])
		w.waitLine(t, regexp.MustCompile(`^SKIP `+regexp.QuoteMeta(filepath.Join(dir, "link.mp4"))+`: not a regular file \(symlink\)$`))
		if code := w.stop(t); code != 0 {
			t.Errorf("exit %d", code)
		}
		if n := strings.Count(w.stdout.String(), "DROP "); n != 2 {
			t.Errorf("%d drops, want 2:\n%s", n, w.stdout.String())
		}
	})

	t.Run("OfflineThenOnline", func(t *testing.T) {
		t.Parallel()
		const device = "cam-watch-offline"
		evs := consumeDevice(t, s, device)
		cfg := s.device(t, device)
		dir := t.TempDir()
		old := writeClip(t, dir, "old.mp4", 1000, time.Now().Add(-48*time.Hour))
		recent := writeClip(t, dir, "recent.mp4", 1000, time.Now())
		data, _ := os.ReadFile(recent)
		// No broker at this address: the clip is dropped while offline.
		w := startWatch(t, "--config", cfg, "--broker", "tcp://127.0.0.1:1", "--timeout", "200ms",
			"watch", dir, "--settle", "50ms", "--poll-interval", "20ms", "--max-age", "24h")
		m := w.waitLine(t, dropLine)
		if m[1] != old || !strings.HasPrefix(m[3], "dropped: older than 24h") {
			t.Errorf("drop line %q", m[0])
		}
		if code := w.stop(t); code != 0 {
			t.Errorf("exit %d\n%s", code, w.stderr.String())
		}
		if strings.Contains(w.stdout.String(), "ok  ") {
			t.Fatalf("uploaded without a broker:\n%s", w.stdout.String())
		}
		// Online, the same state directory: the drop is announced, the clip uploaded.
		w2 := startWatch(t, "--config", cfg, "watch", dir, "--settle", "50ms", "--poll-interval", "20ms", "--max-age", "24h")
		if ev := evs.wait(t, m[2]); ev.Status != protocol.StatusFailed || ev.Error != m[3] {
			t.Errorf("drop event %+v", ev)
		}
		ok := w2.waitLine(t, okLineFor(recent))
		checkObject(t, s, ok[2], data)
		evs.wait(t, ok[5])
	})

	t.Run("DirectoryRemovedWhileRunning", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "spool")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		clip := writeClip(t, dir, "clip.mp4", 100, time.Now())
		w := startWatch(t, "--config", s.device(t, "cam-watch-gone"), "watch", dir, "--settle", "50ms", "--poll-interval", "20ms")
		w.waitLine(t, okLineFor(clip)) // running
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-w.code:
			close(w.code)
			if code != cli.ExitFailure || !strings.Contains(w.stderr.String(), "watch "+dir) {
				t.Errorf("exit %d, stderr:\n%s", code, w.stderr.String())
			}
		case <-time.After(watchTimeout):
			t.Fatal("watch went on without its directory")
		}
	})
}

// offlineConfig writes a device config whose broker does not exist.
func offlineConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeDeviceKey(t, filepath.Join(dir, "device.key"), "cam-usage")
	path := filepath.Join(dir, "device.yaml")
	if err := deviceconfig.Write(path, deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-usage", DeviceKeyFile: "device.key", StateDir: "state"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWatchUsageErrors(t *testing.T) {
	t.Parallel()
	cfg := offlineConfig(t)
	dir := t.TempDir()
	file := writeClip(t, dir, "file.mp4", 10, time.Now())
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing dir", []string{"watch", filepath.Join(dir, "missing")}, "no such file or directory"},
		{"file as dir", []string{"watch", file}, "is not a directory"},
		{"no dir", []string{"watch"}, "expected \"<DIR>\""},
		{"bad after", []string{"watch", dir, "--after", "shred"}, "--after"},
		{"bad size", []string{"watch", dir, "--max-bytes", "lots"}, "--max-bytes: \"lots\" is not a size"},
		{"negative size", []string{"watch", dir, "--max-bytes=-1MB"}, "--max-bytes: \"-1MB\" is not a size"},
		{"negative age", []string{"watch", dir, "--max-age=-1h"}, "MaxAge"},
		{"fast poll", []string{"watch", dir, "--poll-interval", "1ms"}, "PollInterval"},
		{"done is dir", []string{"watch", dir, "--after", "move", "--done-dir", dir}, "DoneDir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, nil, append([]string{"--config", cfg}, c.args...)...)
			if code != cli.ExitUsage || !strings.Contains(stderr, c.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, cli.ExitUsage, c.want)
			}
		})
	}
}

// A usage error is told even while another process of the camera holds the state
// directory (the parallel cases of TestWatchUsageErrors share one: 1 run in 10 got the
// "is running" error instead of exit 2).
func TestWatchUsageErrorWhileStateHeld(t *testing.T) {
	t.Parallel()
	cfg := offlineConfig(t)
	dir := filepath.Dir(cfg) // as offlineConfig wrote it, with absolute paths
	kc, err := deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-usage",
		DeviceKeyFile: filepath.Join(dir, "device.key"), StateDir: filepath.Join(dir, "state")}.KitConfig()
	if err != nil {
		t.Fatal(err)
	}
	holder, err := devicekit.New(kc)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	code, stdout, stderr := runCmd(t, nil, "--config", cfg, "watch", t.TempDir(), "--poll-interval", "1ms")
	if code != cli.ExitUsage || !strings.Contains(stderr, "PollInterval") || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and PollInterval", code, stdout, stderr, cli.ExitUsage)
	}
}

// helperEnv makes the test binary run the command itself (TestWatchHelperProcess), with
// the arguments in helperArgs as JSON.
const (
	helperEnv  = "CLIPGATE_DEVICE_WATCH_HELPER"
	helperArgs = "CLIPGATE_DEVICE_WATCH_ARGS"
)

// TestWatchHelperProcess is the command itself when the signal test runs the test binary
// with helperEnv set; otherwise it does nothing.
func TestWatchHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(helperArgs)), &args); err != nil {
		os.Exit(99)
	}
	os.Args = append([]string{"device"}, args...)
	main()
}

// SIGINT and SIGTERM stop a real watch process cleanly (status 0) after it uploaded.
func TestWatchSignals(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			clip := writeClip(t, dir, "clip.mp4", 1000, time.Now())
			args, _ := json.Marshal([]string{"--config", s.device(t, "cam-sig-"+strconv.Itoa(int(sig))), "watch", dir, "--settle", "50ms", "--poll-interval", "20ms"})
			cmd := exec.Command(os.Args[0], "-test.run=^TestWatchHelperProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"=1", helperArgs+"="+string(args))
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr testutil.SyncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 16)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			re := okLineFor(clip)
			timeout := time.After(watchTimeout)
		wait:
			for {
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatalf("the process ended without uploading; stderr:\n%s", stderr.String())
					}
					if re.MatchString(line) {
						break wait
					}
				case <-timeout:
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("no upload; stderr:\n%s", stderr.String())
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				for range lines { // drain to EOF before Wait
				}
				done <- cmd.Wait()
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("after %v: %v; stderr:\n%s", sig, err, stderr.String())
				}
			case <-time.After(watchTimeout):
				_ = cmd.Process.Kill()
				t.Fatalf("still running after %v", sig)
			}
		})
	}
}

// TestLogNotColouredOffTerminal: the log (console format, the default) written to a pipe
// or a file carries no colour escape codes; and with --log-format json it is JSON lines
// whose keys are unique.
func TestLogNotColouredOffTerminal(t *testing.T) {
	t.Parallel()
	cfg := offlineConfig(t)
	for _, format := range []string{"console", "json"} {
		w := startWatch(t, "--config", cfg, "--timeout", "200ms", "--log-format", format, "watch", t.TempDir())
		deadline := time.Now().Add(watchTimeout)
		for !strings.Contains(w.stderr.String(), "not connected to the broker") {
			if time.Now().After(deadline) {
				t.Fatalf("no warning in the log:\n%s", w.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		w.stop(t)
		log := w.stderr.String()
		if strings.Contains(log, "\x1b[") {
			t.Errorf("--log-format %s: escape codes in a log that is no terminal: %q", format, log)
		}
		if format == "json" {
			clitest.CheckJSONLog(t, log)
		}
	}
}
