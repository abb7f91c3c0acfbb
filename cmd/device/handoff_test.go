package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/testutil"
)

// startWatchProcess runs `device ARGS` as a real process (the test binary as the command,
// TestWatchHelperProcess); stop sends it SIGINT.
func startWatchProcess(t *testing.T, args ...string) (*watchRun, *exec.Cmd) {
	t.Helper()
	w := &watchRun{code: make(chan int, 1)}
	js, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperArgs+"="+string(js))
	cmd.Stdout, cmd.Stderr = &w.stdout, &w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		w.code <- cmd.ProcessState.ExitCode()
	}()
	w.cancel = func() { _ = cmd.Process.Signal(syscall.SIGINT) }
	t.Cleanup(func() {
		select {
		case <-w.code:
		default:
			_ = cmd.Process.Kill()
			<-w.code
		}
	})
	return w, cmd
}

// queuedLine matches the line of a file handed to a watcher.
func queuedLine(path string) *regexp.Regexp {
	return regexp.MustCompile(`^queued ` + regexp.QuoteMeta(path) + ` -> (.+)$`)
}

// While `device watch` runs, `device credentials` and a second watch stop with an error
// naming it, `device upload` hands its files to the watcher, and the watcher is never
// disconnected (issue 9, point 4: they used to connect with the same client ID and the
// broker took the watcher's session over).
func TestCameraProcessesCooperate(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	const device = "cam-coop"
	cfg := s.device(t, device)
	spool := t.TempDir()
	first := writeClip(t, spool, "first.mp4", 2000, time.Now())
	w, cmd := startWatchProcess(t, "--config", cfg, "watch", spool, "--settle", "50ms", "--poll-interval", "20ms")
	w.waitLine(t, okLineFor(first)) // connected, with credentials
	takeovers := s.BrokerStats().Takeovers
	pid := "process " + strconv.Itoa(cmd.Process.Pid)

	code, stdout, stderr := runCmd(t, nil, "--config", cfg, "credentials")
	if code != cli.ExitFailure || stdout != "" || !strings.Contains(stderr, pid) || !strings.Contains(stderr, "watch "+spool) ||
		!strings.Contains(stderr, "would disconnect it") {
		t.Errorf("credentials beside the watcher: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, _, stderr = runCmd(t, nil, "--config", cfg, "watch", t.TempDir())
	if code != cli.ExitFailure || !strings.Contains(stderr, pid) {
		t.Errorf("a second watch: exit %d\nstderr:\n%s", code, stderr)
	}

	mine := t.TempDir()
	a := writeClip(t, mine, "a.mp4", 5000, time.Now())
	b := writeClip(t, mine, "b clip.mp4", 7000, time.Now())
	want := map[string][]byte{}
	for _, p := range []string{a, b} {
		want[p], _ = os.ReadFile(p)
	}
	code, stdout, stderr = runCmd(t, nil, "--config", cfg, "upload", a, b)
	if code != cli.ExitOK || !strings.Contains(stderr, pid) || !strings.Contains(stderr, "handed") {
		t.Fatalf("upload beside the watcher: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, p := range []string{a, b} {
		var m []string
		for _, line := range strings.Split(stdout, "\n") {
			if m == nil {
				m = queuedLine(p).FindStringSubmatch(line)
			}
		}
		if m == nil || m[1] != filepath.Join(spool, filepath.Base(p)) {
			t.Fatalf("no queued line for %s:\n%s", p, stdout)
		}
		ok := w.waitLine(t, okLineFor(m[1]))
		checkObject(t, s, ok[2], want[p])
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want[p]) {
			t.Errorf("the user's file %s: %v", p, err)
		}
	}
	if n := s.BrokerStats().Takeovers; n != takeovers {
		t.Errorf("broker takeovers went from %d to %d: a process of the camera disconnected the watcher", takeovers, n)
	}
	if code := w.stop(t); code != 0 {
		t.Errorf("watch exit %d", code)
	}
	if strings.Contains(w.stderr.String(), "connection lost") {
		t.Errorf("the watcher lost its connection:\n%s", w.stderr.String())
	}
	if left, _ := filepath.Glob(filepath.Join(spool, ".*")); len(left) != 0 {
		t.Errorf("left in the spool: %v", left)
	}
	// The watcher gone, the commands run by themselves again.
	if code, stdout, stderr := runCmd(t, nil, "--config", cfg, "credentials"); code != cli.ExitOK {
		t.Errorf("credentials after the watcher: exit %d\n%s%s", code, stdout, stderr)
	}
}

// A kit that holds the state directory without a spool (another upload, a program using
// devicekit) stops every command with an error naming it; nothing connects.
func TestStateDirBusy(t *testing.T) {
	t.Parallel()
	cfg := offlineConfig(t)
	m, err := parsed(t, "", nil, "--config", cfg, "credentials")
	if err != nil {
		t.Fatal(err)
	}
	f := m.deviceFile()
	kc, err := m.kitConfig()
	if err != nil {
		t.Fatal(err)
	}
	holder, err := devicekit.New(kc)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	clip := writeClip(t, t.TempDir(), "c.mp4", 10, testTime)
	for _, args := range [][]string{{"credentials"}, {"upload", clip}, {"watch", t.TempDir()}} {
		code, stdout, stderr := runCmd(t, nil, append([]string{"--config", cfg}, args...)...)
		if code != cli.ExitFailure || strings.Contains(stdout, "ok  ") || strings.Contains(stdout, "queued") ||
			!strings.Contains(stderr, "process "+strconv.Itoa(os.Getpid())) || !strings.Contains(stderr, "wait for it to end") ||
			!strings.Contains(stderr, f.StateDir) {
			t.Errorf("%v beside a kit: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
	}
}

// handFile into a plain directory: names taken, the same file twice, a file already
// there, names a spool ignores, a missing file, and the copy used across filesystems.
func TestHandFile(t *testing.T) {
	t.Parallel()
	spool, mine := t.TempDir(), t.TempDir()
	taken := writeClip(t, spool, "clip.mp4", 10, testTime)
	takenData, _ := os.ReadFile(taken)
	src := writeClip(t, mine, "clip.mp4", 20, testTime)
	srcData, _ := os.ReadFile(src)

	dest, err := handFile(src, testTime, spool)
	if err != nil || dest != filepath.Join(spool, "clip-2.mp4") {
		t.Fatalf("name taken: %q, %v", dest, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, srcData) {
		t.Error("the handed file differs")
	}
	if got, _ := os.ReadFile(taken); !bytes.Equal(got, takenData) {
		t.Error("the file that held the name was changed")
	}
	if again, err := handFile(src, testTime, spool); err != nil || again != dest {
		t.Errorf("the same file again: %q, %v; want %q", again, err, dest)
	}
	if in, err := handFile(taken, testTime, spool); err != nil || in != taken {
		t.Errorf("a file already in the spool: %q, %v", in, err)
	}
	for _, name := range []string{".hidden.mp4", "x.part", "y.tmp"} {
		p := writeClip(t, mine, name, 5, testTime)
		if d, err := handFile(p, testTime, spool); err == nil || !strings.Contains(err.Error(), "rename the file") {
			t.Errorf("%s: %q, %v; want a refusal", name, d, err)
		}
	}
	if d, err := handFile(filepath.Join(mine, "missing.mp4"), testTime, spool); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %q, %v", d, err)
	}
	entries, _ := os.ReadDir(spool)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "clip-2.mp4 clip.mp4" {
		t.Errorf("spool holds %v", names)
	}

	// handOff: a line per file; a missing or empty file fails alone and is not handed.
	spool2 := t.TempDir()
	m := &Main{Stdout: &testutil.SyncBuffer{}, Stderr: &testutil.SyncBuffer{}}
	empty := writeClip(t, mine, "empty.mp4", 0, testTime)
	items := []uploadItem{statClip(src), statClip(empty), statClip(filepath.Join(mine, "gone.mp4"))}
	holder := &devicekit.StateInUseError{StateDir: "/state", Holder: devicekit.StateHolder{PID: 42, Command: "device watch s", Spools: []string{spool2}}}
	if err := m.handOff(items, holder); !errors.Is(err, cli.ErrReported) {
		t.Errorf("handOff with failures: %v", err)
	}
	out := m.Stdout.(*testutil.SyncBuffer).String()
	for _, w := range []string{"queued " + src + " -> " + filepath.Join(spool2, "clip.mp4") + "\n", "FAIL " + empty + ": devicekit: invalid clip: empty file (0 bytes)", "FAIL " + filepath.Join(mine, "gone.mp4") + ": no such file"} {
		if !strings.Contains(out, w) {
			t.Errorf("handOff output lacks %q:\n%s", w, out)
		}
	}
	if errOut := m.Stderr.(*testutil.SyncBuffer).String(); !strings.Contains(errOut, "process 42 (device watch s) watches "+spool2) {
		t.Errorf("handOff stderr: %q", errOut)
	}
	if entries, _ := os.ReadDir(spool2); len(entries) != 1 {
		t.Errorf("spool holds %d entries, want only the clip", len(entries))
	}

	// The copy (hard links fail across filesystems) keeps content and date.
	dst := filepath.Join(spool, ".copy.tmp")
	if err := copyFile(src, dst, testTime); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if got, _ := os.ReadFile(dst); err != nil || !bytes.Equal(got, srcData) || !fi.ModTime().Equal(testTime) {
		t.Errorf("copy: %v, mtime %v", err, fi.ModTime())
	}
	if err := copyFile(src, dst, testTime); !errors.Is(err, os.ErrExist) {
		t.Errorf("copy over an existing file: %v", err)
	}
}
