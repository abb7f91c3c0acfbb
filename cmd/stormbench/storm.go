package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// Config is what to measure: the command's own flags.
type Config struct {
	Devices            int           `help:"Devices, each a devicekit.Kit with its own state directory." default:"10000"`
	Workers            int           `help:"Token workers (production defaults: 50 STS calls/s, 32 in flight and a queue of 256 each)." default:"4"`
	PerChild           int           `help:"Devices per child process (each device holds a connection and a state lock: two files of the 20,000 a process may open)." default:"5000"`
	ConnectConcurrency int           `help:"Connections a child opens at once." default:"200"`
	PerSource          int           `help:"Devices per loopback source address (127.0.0.10 and up): the broker limits connections per source address (50/s by default), and cameras connect from addresses of their own." default:"100"`
	Phases             string        `help:"Phases to run: cold, warm (needs --dir from a cold run) or both." enum:"cold,warm,both" default:"both"`
	Dir                string        `help:"Directory of the stack's keys and the devices' state (default: a temporary one, removed at the end)." type:"path"`
	Timeout            time.Duration `help:"How long a phase may take before the devices still without credentials give up." default:"5m"`
	// Logger receives the stack's logs (not a flag).
	Logger zerolog.Logger `kong:"-"`
}

func (c *Config) validate() error {
	if c.Devices < 1 || c.Workers < 1 || c.PerChild < 1 || c.ConnectConcurrency < 1 || c.PerSource < 1 || c.Timeout <= 0 {
		return errors.New("devices, workers, per-child, per-source, connect-concurrency and timeout must be positive")
	}
	if c.Devices/c.PerSource > 240 {
		return errors.New("more than 240 source addresses (127.0.0.10 to .250): raise --per-source")
	}
	if c.Phases == "warm" && c.Dir == "" {
		return errors.New("--phases warm needs the --dir of an earlier cold run")
	}
	return nil
}

// Phase is what one phase measured.
type Phase struct {
	Name    string
	Devices int
	// Connected and Ready count devices connected, and holding credentials.
	Connected, Ready int
	// AllConnected and AllReady are when the last device connected and got credentials,
	// from the start of the phase (the child processes' start included).
	AllConnected, AllReady time.Duration
	ReadyP50, ReadyP99     time.Duration
	// Requests counts the credentials requests the devices' kits accepted a reply to
	// (CredentialRefreshes); Retries their retries, Timeouts the requests that got no reply
	// within the request timeout.
	Requests, Retries, Timeouts int64
	// STSCalls, WorkerRequests and Busy are the token workers' counts during the phase.
	STSCalls, WorkerRequests, Busy uint64
	// Dropped is what the broker dropped on the way to a worker (outbound queue or inflight
	// window); Held is the most it held at once for a worker with room; FlowTimeouts the
	// holds that ran out.
	Dropped, Held, FlowTimeouts int64
	Errors                      map[string]int
}

// Run starts the stack, runs the phases and prints the figures to out.
func Run(ctx context.Context, cfg Config, out io.Writer) ([]*Phase, error) {
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "stormbench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	stack, err := inproc.Start(ctx, inproc.Options{Logger: cfg.Logger, Workers: cfg.Workers, Dir: filepath.Join(dir, "stack")})
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	fmt.Fprintf(out, "stormbench: %d devices in %d child processes, %d token workers at their defaults (STS %v/s, %d in flight, queue %d each), broker writes pending %d; GOMAXPROCS %d, %s\n",
		cfg.Devices, (cfg.Devices+cfg.PerChild-1)/cfg.PerChild, cfg.Workers, tokenworker.DefaultSTSRate, tokenworker.DefaultMaxConcurrent,
		8*tokenworker.DefaultMaxConcurrent, broker.DefaultMaxWritesPending, runtime.GOMAXPROCS(0), runtime.Version())
	var phases []*Phase
	for _, name := range []string{"cold", "warm"} {
		if cfg.Phases != "both" && cfg.Phases != name {
			continue
		}
		p, err := runPhase(ctx, cfg, stack, dir, name)
		if err != nil {
			return phases, err
		}
		phases = append(phases, p)
		p.print(out)
	}
	return phases, nil
}

// workerTotals sums the workers' STS calls, requests and busy replies.
func workerTotals(stack *inproc.Stack, n int) (sts, reqs, busy uint64) {
	for i := range n {
		if st, ok := stack.WorkerStats(i); ok {
			sts += st.STSCalls
			reqs += st.Requests
			busy += st.Errors["busy"]
		}
	}
	return
}

// runPhase starts the child processes, waits for their reports and adds the stack's counts.
func runPhase(ctx context.Context, cfg Config, stack *inproc.Stack, dir, name string) (*Phase, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sts0, req0, busy0 := workerTotals(stack, cfg.Workers)
	b0 := stack.BrokerStats()
	p := &Phase{Name: name, Devices: cfg.Devices, Errors: map[string]int{}}

	// Peak of the requests held by the broker, sampled.
	stop := make(chan struct{})
	var held atomic.Int64
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if h := stack.BrokerStats().FlowHeld; h > held.Load() {
					held.Store(h)
				}
			}
		}
	}()
	defer close(stop)

	start := time.Now()
	var mu sync.Mutex
	var reports []childReport
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Devices/cfg.PerChild+1)
	for c, first := 0, 0; first < cfg.Devices; c, first = c+1, first+cfg.PerChild {
		spec := childSpec{
			BrokerURL: stack.BrokerURL(), FleetKeysFile: stack.FleetKeysFile(), Dir: filepath.Join(dir, "devices"),
			First: first, Count: min(cfg.PerChild, cfg.Devices-first), PerSource: cfg.PerSource,
			Start: start, ConnectConcurrency: cfg.ConnectConcurrency, Timeout: cfg.Timeout,
		}
		b, _ := json.Marshal(spec)
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(b))
		cmd.Stderr = os.Stderr
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("child %d: %w", c, err)
				return
			}
			var r childReport
			if err := json.Unmarshal(lastLine(stdout.Bytes()), &r); err != nil {
				errs <- fmt.Errorf("child %d report: %w", c, err)
				return
			}
			mu.Lock()
			reports = append(reports, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(slices.Collect(chanValues(errs))...); err != nil {
		return nil, err
	}
	var ready []time.Duration
	for _, r := range reports {
		p.Connected += r.Connected
		p.Ready += len(r.Ready)
		ready = append(ready, r.Ready...)
		p.AllConnected = max(p.AllConnected, r.AllConnected)
		p.Requests += r.Requests
		p.Retries += r.Retries
		p.Timeouts += r.Timeouts
		for k, v := range r.Errors {
			p.Errors[k] += v
		}
	}
	slices.Sort(ready)
	if n := len(ready); n > 0 {
		p.AllReady, p.ReadyP50, p.ReadyP99 = ready[n-1], ready[n/2], ready[min(n-1, n*99/100)]
	}
	sts1, req1, busy1 := workerTotals(stack, cfg.Workers)
	p.STSCalls, p.WorkerRequests, p.Busy = sts1-sts0, req1-req0, busy1-busy0
	b1 := stack.BrokerStats()
	p.Dropped = b1.MessagesDropped + b1.InflightDropped - b0.MessagesDropped - b0.InflightDropped
	p.FlowTimeouts = b1.FlowTimeouts - b0.FlowTimeouts
	p.Held = held.Load()
	return p, nil
}

func chanValues[T any](c <-chan T) func(func(T) bool) {
	return func(yield func(T) bool) {
		for v := range c {
			if !yield(v) {
				return
			}
		}
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func (p *Phase) print(out io.Writer) {
	fmt.Fprintf(out, "%s: %d devices; %d connected (last at %v), %d with credentials: last at %v (p50 %v, p99 %v)\n",
		p.Name, p.Devices, p.Connected, p.AllConnected.Round(time.Millisecond), p.Ready, p.AllReady.Round(time.Millisecond),
		p.ReadyP50.Round(time.Millisecond), p.ReadyP99.Round(time.Millisecond))
	fmt.Fprintf(out, "  STS calls %d (%.3f per device); worker requests %d, busy replies %d (%.2f per device); kit retries %d, request timeouts %d, replies accepted %d\n",
		p.STSCalls, float64(p.STSCalls)/float64(p.Devices), p.WorkerRequests, p.Busy, float64(p.Busy)/float64(p.Devices), p.Retries, p.Timeouts, p.Requests)
	fmt.Fprintf(out, "  broker: dropped %d, held at most %d at once, holds timed out %d; errors %v\n", p.Dropped, p.Held, p.FlowTimeouts, p.Errors)
}

// childEnv carries a child process's childSpec (JSON).
const childEnv = "CLIPGATE_STORMBENCH_CHILD"

// childSpec is what one child process runs.
type childSpec struct {
	BrokerURL          string
	FleetKeysFile      string // the stack's fleet keyring (generated at run time in its directory)
	Dir                string
	First, Count       int
	PerSource          int // devices per loopback source address: device i uses 127.0.0.(10 + i/PerSource)
	Start              time.Time
	ConnectConcurrency int
	Timeout            time.Duration
}

// childReport is what a child prints as its last line.
type childReport struct {
	Connected         int
	AllConnected      time.Duration
	Ready             []time.Duration // per device with credentials, from Start
	Requests          int64
	Retries, Timeouts int64
	Errors            map[string]int
}

// logCounter counts the kits' retry and timeout log lines (the kit's debug log is the
// only place that says why a credentials request was retried).
type logCounter struct{ retries, timeouts atomic.Int64 }

func (c *logCounter) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("retrying credentials request")) {
		c.retries.Add(1)
		if bytes.Contains(b, []byte("no auth reply within")) {
			c.timeouts.Add(1)
		}
	}
	return len(b), nil
}

// runChild runs the devices of one child process and prints its report.
func runChild(ctx context.Context, specJSON string, out io.Writer) error {
	var s childSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return fmt.Errorf("child spec: %w", err)
	}
	ctx, cancel := context.WithDeadline(ctx, s.Start.Add(s.Timeout))
	defer cancel()
	dialers := map[int]*net.Dialer{}
	dialer := func(i int) *net.Dialer {
		src := 10 + i/s.PerSource
		if d := dialers[src]; d != nil {
			return d
		}
		d := &net.Dialer{
			Timeout:   30 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(src))},
			// The port is chosen at connect, by the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT).
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				})
				return errors.Join(err, serr)
			},
		}
		dialers[src] = d
		return d
	}
	fleet, err := identity.LoadKeyring(s.FleetKeysFile)
	if err != nil {
		return err
	}
	counter := new(logCounter)
	log := zerolog.New(counter).Level(zerolog.DebugLevel)
	var (
		mu    sync.Mutex
		rep   = childReport{Errors: map[string]int{}}
		kits  []*devicekit.Kit
		wg    sync.WaitGroup
		slots = make(chan struct{}, s.ConnectConcurrency)
	)
	fail := func(what string, err error) {
		mu.Lock()
		rep.Errors[what+": "+firstLine(err.Error())]++
		mu.Unlock()
	}
	for i := s.First; i < s.First+s.Count; i++ {
		id := fmt.Sprintf("storm-%05d", i)
		d := dialer(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			key, err := identity.NewDeviceKey(fleet, id)
			if err != nil {
				<-slots
				fail("key", err)
				return
			}
			k, err := devicekit.New(devicekit.Config{
				BrokerURL: s.BrokerURL, DeviceID: id, DeviceKey: (*devicekit.DeviceKey)(key),
				StateDir: filepath.Join(s.Dir, id), Dialer: d, Logger: log,
			})
			if err != nil {
				<-slots
				fail("new", err)
				return
			}
			mu.Lock()
			kits = append(kits, k)
			mu.Unlock()
			err = k.Connect(ctx)
			<-slots
			if err != nil {
				fail("connect", err)
				return
			}
			connected := time.Since(s.Start)
			if _, err := k.Credentials(ctx); err != nil {
				fail("credentials", err)
				return
			}
			ready := time.Since(s.Start)
			mu.Lock()
			rep.Connected++
			rep.AllConnected = max(rep.AllConnected, connected)
			rep.Ready = append(rep.Ready, ready)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Close the kits (they keep their credentials on disk), a few at a time.
	var cwg sync.WaitGroup
	for _, k := range kits {
		cwg.Add(1)
		slots <- struct{}{}
		go func() {
			defer cwg.Done()
			st := k.Stats()
			mu.Lock()
			rep.Requests += st.CredentialRefreshes
			mu.Unlock()
			k.Close()
			<-slots
		}()
	}
	cwg.Wait()
	rep.Retries, rep.Timeouts = counter.retries.Load(), counter.timeouts.Load()
	w := bufio.NewWriter(out)
	defer w.Flush()
	return json.NewEncoder(w).Encode(rep)
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	if len(s) > 160 {
		return s[:160]
	}
	return s
}
