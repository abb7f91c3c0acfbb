package localcloud

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// BenchmarkServerPeakRSS256MiB measures the memory the server needs to stream a 256 MiB
// object: it builds cmd/localcloud, runs it as a child process, uploads through the OSS
// SDK from this process and reads the child's peak resident set (VmHWM in
// /proc/PID/status). Reported metrics: peak-RSS-MiB after the uploads and idle-RSS-MiB
// before them. Linux only; needs the go command to build the binary.
func BenchmarkServerPeakRSS256MiB(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/PID/status")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "localcloud")
	build := exec.Command(goCmd, "build", "-o", bin, "github.com/clipgate/clipgate/cmd/localcloud")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building cmd/localcloud: %v\n%s", err, out)
	}
	secret := rand.Text()
	cfg := fmt.Sprintf("ossAddr: 127.0.0.1:0\nstsAddr: 127.0.0.1:0\ndataDir: data\nbuckets: [bench]\n"+
		"keys:\n  - id: LTAIbench\n    secret: %s\n", secret)
	cfgPath := filepath.Join(dir, "localcloud.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfgPath, "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	endpoint := readEndpoint(b, stdout)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	c, err := oss.New(endpoint, "LTAIbench", secret, oss.Timeout(10, 600))
	if err != nil {
		b.Fatal(err)
	}
	bk, err := c.Bucket("bench")
	if err != nil {
		b.Fatal(err)
	}
	idle := vmHWM(b, cmd.Process.Pid)
	cpu0 := cpuTicks(b, cmd.Process.Pid)
	src := newPatternReader(b)
	b.SetBytes(benchBigSize)
	n := 0
	for b.Loop() {
		if err := bk.PutObject(fmt.Sprintf("big/%d", n%2), io.LimitReader(src, benchBigSize)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(vmHWM(b, cmd.Process.Pid))/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(idle)/(1<<20), "idle-RSS-MiB")
	// CPU time per GiB does not depend on how busy the machine is, unlike MB/s.
	cpuSec := float64(cpuTicks(b, cmd.Process.Pid)-cpu0) / userHZ
	b.ReportMetric(cpuSec/(float64(n)*benchBigSize/(1<<30)), "server-CPU-s/GiB")
}

// readEndpoint reads the command's banner up to its OSS endpoint line.
func readEndpoint(b *testing.B, r io.Reader) string {
	b.Helper()
	re := regexp.MustCompile(`^\s+OSS endpoint\s+(\S+)`)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return m[1]
		}
	}
	b.Fatalf("localcloud printed no OSS endpoint (%v)", sc.Err())
	return ""
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// cpuTicks returns the user plus system CPU time of a process (all threads) in USER_HZ
// ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	text, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The command name in parentheses may hold spaces; fields count from after it.
	_, rest, ok := strings.Cut(string(text), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		b.Fatalf("unexpected /proc stat %q", text)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of stat(5)
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		b.Fatalf("unexpected /proc stat %q", text)
	}
	return utime + stime
}

// vmHWM returns the peak resident set size of a process in bytes.
func vmHWM(b *testing.B, pid int) int64 {
	b.Helper()
	text, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}
