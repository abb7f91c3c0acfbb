package broker

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/clipgate/clipgate/internal/identity"
)

// Environment of the client process of BenchmarkIdleConnections: the test binary
// re-executed, so that the broker's process holds only the server ends of the
// connections (the file descriptor limit here is 20000).
const (
	envBenchAddr  = "CLIPGATE_BROKER_BENCH_ADDR"
	envBenchN     = "CLIPGATE_BROKER_BENCH_N"
	envBenchFleet = "CLIPGATE_BROKER_BENCH_FLEET"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(envBenchAddr); addr != "" {
		os.Exit(idleClients(addr))
	}
	os.Exit(m.Run())
}

// idleClients opens N device connections (raw CONNECT, keepalive 10 minutes), prints
// "ready", and holds them until stdin closes.
func idleClients(addr string) int {
	n, _ := strconv.Atoi(os.Getenv(envBenchN))
	text, err := hex.DecodeString(os.Getenv(envBenchFleet))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fleet, err := identity.ParseKeyring(text)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	conns := make([]net.Conn, 0, n)
	var hdr [4]byte
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("idle-%05d", i)
		c, err := idleDialer(i).Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			return 1
		}
		pw := devicePassword(fleet, id, time.Now())
		if _, err := c.Write(connectPacket{clientID: id, username: id, password: pw, clean: true, keepalive: 600}.encode()); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			return 1
		}
		if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[3] != 0 {
			fmt.Fprintln(os.Stderr, "connack:", hdr, err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// idleDialer dials connection i from loopback source address 127.0.0.(10 + i/5000), with
// IP_BIND_ADDRESS_NO_PORT so that the port is chosen at connect by the whole 4-tuple: the
// ephemeral ports of 127.0.0.1 run short on a busy machine (tens of thousands in
// TIME_WAIT), and a bind before connect would need a port free for every destination.
func idleDialer(i int) *net.Dialer {
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i/5000))},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return errors.Join(err, serr)
		},
	}
}

// BenchmarkIdleConnections measures the broker's memory and CPU per idle, authenticated
// device connection at several fleet sizes (1k, 5k, 10k and 19k devices; the file
// descriptor limit here is 20,000 per process; CLIPGATE_BROKER_BENCH_SIZES="1000,5000"
// to choose): the growth of the Go heap in use (after GC), of the live heap, of goroutine
// stacks and of the process's RSS, divided by the devices; the broker process's CPU time
// per connect (CONNECT, device password check, CONNACK) and, over 5 s with every device
// connected and silent, its CPU in milliseconds per second
// (CLIPGATE_BROKER_BENCH_IDLE_PROFILE=FILE writes a CPU profile of that window).
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x ./internal/broker
func BenchmarkIdleConnections(b *testing.B) {
	sizes := []int{1000, 5000, 10000, 19000}
	if v := os.Getenv("CLIPGATE_BROKER_BENCH_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("CLIPGATE_BROKER_BENCH_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, store := range []bool{false, true} {
		name := "in-memory"
		if store {
			name = "pebble"
		}
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/devices=%d", name, n), func(b *testing.B) {
				for b.Loop() {
					idleConnections(b, n, store)
				}
			})
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func idleConnections(b *testing.B, n int, store bool) {
	fleet, _ := identity.NewFleetKeyring()
	cfg := Config{ConnectKeys: fleet.ConnectRoots(), Addr: "127.0.0.1:0", HTTPAddr: "none", DeviceRate: -1}
	if store {
		cfg.DataDir = filepath.Join(b.TempDir(), "data")
	}
	br, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Close()

	before, rss0 := memAfterGC(), rssBytes(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envBenchAddr+"="+br.Addr(), envBenchN+"="+strconv.Itoa(n), envBenchFleet+"="+hex.EncodeToString(must(fleet.MarshalText())))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	start, cpu0 := time.Now(), cpuTime()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("client process: %q %v", line, err)
	}
	connectTime := time.Since(start)
	for br.Stats().Sessions != int64(n) {
		time.Sleep(10 * time.Millisecond)
	}
	connectCPU := cpuTime() - cpu0
	time.Sleep(time.Second) // let the $SYS tick and connection setup garbage settle
	after, rss := memAfterGC(), rssBytes(b)
	const idle = 5 * time.Second
	if path := os.Getenv("CLIPGATE_BROKER_BENCH_IDLE_PROFILE"); path != "" {
		// a CPU profile of the idle window, to see what an idle fleet costs
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu1 := cpuTime()
	time.Sleep(idle)
	idleCPU := cpuTime() - cpu1
	b.ReportMetric(float64(rss-rss0)/float64(n), "rss-B/conn")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(connectCPU.Microseconds())/float64(n), "connect-cpu-µs/conn")
	b.ReportMetric(float64(idleCPU.Microseconds())/1000/idle.Seconds(), "idle-cpu-ms/s")
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n), "heap-B/conn")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "live-B/conn")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(n), "stack-B/conn")
	b.ReportMetric(float64(n)/connectTime.Seconds(), "connects/s")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is the process's resident set size (VmRSS of /proc/self/status).
func rssBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func memAfterGC() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}

// BenchmarkQoS1Throughput compares QoS 1 request throughput through clipgate's hooks
// (authentication, ACL on every publish and delivery, the shared-subscription picker,
// rate-limit bookkeeping) with the same broker configured with mochi's allow-all hook.
// 10 devices each publish 2,000 auth requests (QoS 1) to a group of 2 token workers, with
// at most window unacknowledged publishes per device. mochi acknowledges a publish before
// it fans out, so the window does not bound a worker's outbound queue (256): when the
// workers fall behind, mochi drops what overflows (acknowledged, never delivered: reported
// as lost), rarely with window 16, routinely with 64. A round ends when the workers have
// received (or mochi has dropped) all 20,000. Rounds of the two brokers alternate; the
// figures are medians of the rounds. No session store (its fsyncs would dominate).
//
//	go test -run '^$' -bench QoS1Throughput -benchtime 7x ./internal/broker
func BenchmarkQoS1Throughput(b *testing.B) {
	for _, window := range []int{16, 64} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			hooked := newThroughputRig(b, false)
			plain := newThroughputRig(b, true)
			var withHooks, allowAll []float64
			var lostHooks, lostAllow int64
			for b.Loop() {
				r, l := hooked.round(b, window)
				withHooks, lostHooks = append(withHooks, r), lostHooks+l
				r, l = plain.round(b, window)
				allowAll, lostAllow = append(allowAll, r), lostAllow+l
			}
			h, a := median(withHooks), median(allowAll)
			b.ReportMetric(h, "hooks-msg/s")
			b.ReportMetric(a, "allowall-msg/s")
			b.ReportMetric(h/a, "ratio")
			b.ReportMetric(float64(lostHooks), "hooks-lost")
			b.ReportMetric(float64(lostAllow), "allowall-lost")
		})
	}
}

const (
	tpDevices  = 10
	tpPerDev   = 2000
	tpWorkers  = 2
	tpRoundMax = 2 * time.Minute
)

type throughputRig struct {
	br       *Broker
	devices  []paho.Client
	received atomic.Int64
}

func newThroughputRig(b *testing.B, allowAll bool) *throughputRig {
	b.Helper()
	fleet, _ := identity.NewFleetKeyring()
	dir := b.TempDir()
	nop := zerolog.Nop()
	cfg := Config{ConnectKeys: fleet.ConnectRoots(), Addr: "127.0.0.1:0", HTTPAddr: "none", DeviceRate: -1,
		ServiceAccountsFile: accountsFile(b, dir), Logger: &nop, allowAll: allowAll}
	br, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	rig := &throughputRig{br: br}
	b.Cleanup(func() { br.Close() })
	dial := func(id, user, pw string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + br.Addr()).SetClientID(id).
			SetUsername(user).SetPassword(pw).SetProtocolVersion(4).SetOrderMatters(false).
			SetAutoReconnect(false).SetKeepAlive(60 * time.Second).SetWriteTimeout(10 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("connect %s: %v", id, tok.Error())
		}
		b.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	filter := "$share/tokenworkers/clipgate/v1/devices/+/auth/request"
	for i := 0; i < tpWorkers; i++ {
		w := dial(ServiceClientID("worker", strconv.Itoa(i)), "worker", passwordOf("worker"))
		tok := w.Subscribe(filter, 1, func(paho.Client, paho.Message) { rig.received.Add(1) })
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal("subscribe:", tok.Error())
		}
	}
	for i := 0; i < tpDevices; i++ {
		id := fmt.Sprintf("cam-%d", i)
		rig.devices = append(rig.devices, dial(id, id, devicePassword(fleet, id, time.Now())))
	}
	return rig
}

// round publishes one round and returns messages per second and messages lost (dropped
// by mochi: acknowledged to the publisher, never delivered).
func (r *throughputRig) round(b *testing.B, window int) (float64, int64) {
	total := int64(tpDevices * tpPerDev)
	base := r.received.Load()
	dropped0 := r.br.Stats().MessagesDropped + r.br.Stats().InflightDropped
	payload := []byte(`{"v":1,"id":"0123456789abcdef","device":"cam-0","ts":"2026-01-01T00:00:00Z","nonce":"AAAAAAAAAAAAAAAAAAAAAA","mode":"w","sig":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`)
	start := time.Now()
	var wg sync.WaitGroup
	for i, d := range r.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("clipgate/v1/devices/cam-%d/auth/request", i)
			inflight := make(chan paho.Token, window)
			for j := 0; j < tpPerDev; j++ {
				if len(inflight) == window {
					(<-inflight).WaitTimeout(30 * time.Second)
				}
				inflight <- d.Publish(topic, 1, false, payload)
			}
			for len(inflight) > 0 {
				(<-inflight).WaitTimeout(30 * time.Second)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(tpRoundMax)
	for {
		got := r.received.Load() - base
		dropped := r.br.Stats().MessagesDropped + r.br.Stats().InflightDropped - dropped0
		if got+dropped >= total {
			return float64(got) / time.Since(start).Seconds(), dropped
		}
		if time.Now().After(deadline) {
			b.Fatalf("round incomplete: %d of %d received, %d dropped", got, total, dropped)
		}
		time.Sleep(time.Millisecond)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
