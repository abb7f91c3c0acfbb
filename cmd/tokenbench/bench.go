package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// Config is what to measure: the command's own flags.
type Config struct {
	Devices            int           `help:"Simulated devices, one MQTT connection each." default:"1000"`
	Rounds             int           `help:"Measured requests per device and phase (each device asks, waits for its reply, asks again)." default:"5"`
	Workers            int           `help:"Real token workers." default:"2"`
	EchoWorkers        int           `help:"Echo workers (0: as many as --workers)." default:"0"`
	MaxConcurrent      int           `help:"AssumeRole calls in flight per worker (0: the worker's default, 32). A request waits up to 3 s for a slot before it is answered busy." default:"0"`
	QueueSize          int           `help:"Requests a worker holds before it answers busy at once (0: room for every device's request, at least the worker's default of 8 x max-concurrent, so that the all-devices burst is queued, not shed)." default:"0"`
	Reuse              bool          `help:"Let the workers hand out cached credentials (by default every request calls STS, as when each device asks once an hour)."`
	ReplyTimeout       time.Duration `help:"How long a device waits for a reply." default:"10s"`
	ConnectConcurrency int           `help:"Devices connecting at once." default:"64"`
	Phases             string        `help:"Phases to run: real, echo or both." enum:"real,echo,both" default:"both"`
	WorkerRouting      string        `help:"Broker's routing of auth requests to token workers: round-robin (connected workers take turns) or device (a device's requests always go to the same worker, whose cache then reuses its credentials)." enum:"round-robin,device" default:"round-robin"`
	MaxWritesPending   int32         `help:"Broker's outbound queue per client (0: the broker's default); a burst beyond it to one worker is dropped, and its devices wait --reply-timeout." default:"0"`
	CPUProfile         string        `help:"Write a CPU profile of the measured real phase to this file." type:"path" placeholder:"FILE"`
	// Logger receives the stack's logs (not a flag).
	Logger zerolog.Logger `kong:"-"`
}

// Phase is the measurement of one phase.
type Phase struct {
	Name       string
	RoundTrips int // replies received
	Timeouts   int
	Wall       time.Duration
	P50, P99   time.Duration
	Codes      map[string]int // "ok" or the reply error code, per reply
	Failures   map[string]int // device-side problems: publish errors, unopenable credentials
	// CPU is the process's CPU time (user and system) during the phase: broker, workers,
	// local cloud and devices together. Per round trip it depends less than the rates on
	// what else runs on the machine.
	CPU time.Duration
}

// CPUPerRoundTrip returns the process CPU time per round trip.
func (p *Phase) CPUPerRoundTrip() time.Duration {
	if p.RoundTrips == 0 {
		return 0
	}
	return p.CPU / time.Duration(p.RoundTrips)
}

// Rate returns round trips per second.
func (p *Phase) Rate() float64 {
	if p.Wall <= 0 {
		return 0
	}
	return float64(p.RoundTrips) / p.Wall.Seconds()
}

// OKRate returns round trips that brought credentials per second.
func (p *Phase) OKRate() float64 {
	if p.Wall <= 0 {
		return 0
	}
	return float64(p.Codes["ok"]) / p.Wall.Seconds()
}

// Report is what Run measured.
type Report struct {
	// WarmReal and WarmEcho are the first round of each phase (every device asking at
	// once from idle), not part of the figures but printed: a burst is where the broker
	// drops messages.
	WarmReal, WarmEcho *Phase
	Real, Echo         *Phase
	WorkerStats        []tokenworker.Stats // real workers after their phase
	BrokerBefore       broker.Stats
	BrokerAfter        broker.Stats
}

// validate refuses a configuration that cannot be measured.
func (cfg *Config) validate() error {
	if cfg.Devices < 1 || cfg.Rounds < 1 || cfg.Workers < 1 || cfg.EchoWorkers < 0 || cfg.ConnectConcurrency < 1 || cfg.ReplyTimeout <= 0 {
		return errors.New("devices, rounds, workers, connect-concurrency and reply-timeout must be positive")
	}
	if cfg.MaxConcurrent < 0 || cfg.QueueSize < 0 || cfg.MaxWritesPending < 0 {
		return errors.New("max-concurrent, queue-size and max-writes-pending must not be negative")
	}
	switch cfg.WorkerRouting {
	case "", broker.WorkerRoutingRoundRobin, broker.WorkerRoutingDevice:
	default:
		return fmt.Errorf("worker routing %q: %q or %q", cfg.WorkerRouting, broker.WorkerRoutingRoundRobin, broker.WorkerRoutingDevice)
	}
	return nil
}

// Run starts the stack and the devices, runs the phases and prints the figures to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.EchoWorkers == 0 {
		cfg.EchoWorkers = cfg.Workers
	}
	if cfg.Phases == "" {
		cfg.Phases = "both"
	}
	if cfg.WorkerRouting == "" {
		cfg.WorkerRouting = broker.WorkerRoutingRoundRobin
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = tokenworker.DefaultMaxConcurrent
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = max(cfg.Devices, 8*cfg.MaxConcurrent)
	}
	stack, err := inproc.Start(ctx, inproc.Options{
		Logger:  cfg.Logger,
		Workers: cfg.Workers,
		WorkerConfig: func(c *tokenworker.Config) {
			// The devices ask far more often than real ones would: lift the per-device
			// limit. The worker's STS rate limit (default 50/s) protects Alibaba's STS,
			// which throttles per account; the local STS has no such limit, so it is
			// lifted too, and the figure is the pipeline's, not the limiter's. Every
			// request still calls STS (unless --reuse).
			c.DeviceRate = rate.Inf
			c.STSRate = rate.Inf
			c.MaxConcurrent = cfg.MaxConcurrent
			c.QueueSize = cfg.QueueSize
			if !cfg.Reuse {
				c.ReuseMargin = -1
			}
		},
		BrokerConfig: func(c *broker.Config) {
			c.DeviceRate = -1 // a device's publish rate limit would pace the echo phase
			c.WorkerRouting = cfg.WorkerRouting
			if cfg.MaxWritesPending > 0 {
				c.MaxWritesPending = cfg.MaxWritesPending
			}
		},
	})
	if err != nil {
		return nil, err
	}
	defer stack.Close()

	writes := "default"
	if cfg.MaxWritesPending > 0 {
		writes = fmt.Sprint(cfg.MaxWritesPending)
	}
	fmt.Fprintf(out, "tokenbench: %d devices x %d rounds; %d token workers (%s, %d STS calls in flight and %d queued each), %d echo workers; broker writes pending %s, worker routing %s; GOMAXPROCS %d, %s/%s, %s\n",
		cfg.Devices, cfg.Rounds, cfg.Workers, map[bool]string{true: "cached credentials reused", false: "every request calls STS"}[cfg.Reuse],
		cfg.MaxConcurrent, cfg.QueueSize, cfg.EchoWorkers, writes, cfg.WorkerRouting, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())

	start := time.Now()
	fleet, err := connectFleet(ctx, stack, cfg)
	if err != nil {
		return nil, err
	}
	defer fleet.close()
	fmt.Fprintf(out, "connected %d devices in %v\n", len(fleet.devices), time.Since(start).Round(time.Millisecond))

	rep := &Report{BrokerBefore: stack.BrokerStats()}
	if cfg.Phases != "echo" {
		if rep.WarmReal, err = fleet.run(ctx, "real warm-up", 1); err != nil {
			return nil, err
		}
		stopProfile, err := startProfile(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		rep.Real, err = fleet.run(ctx, "real", cfg.Rounds)
		if perr := stopProfile(); err == nil {
			err = perr
		}
		if err != nil {
			return nil, err
		}
		for i := range cfg.Workers {
			if st, ok := stack.WorkerStats(i); ok {
				rep.WorkerStats = append(rep.WorkerStats, st)
			}
		}
	}
	if cfg.Phases != "real" {
		for i := range cfg.Workers {
			if err := stack.StopWorker(i); err != nil {
				return nil, err
			}
		}
		for i := range cfg.EchoWorkers {
			e, err := startEcho(ctx, stack, i)
			if err != nil {
				return nil, err
			}
			defer e.Close()
		}
		if rep.WarmEcho, err = fleet.run(ctx, "echo warm-up", 1); err != nil {
			return nil, err
		}
		if rep.Echo, err = fleet.run(ctx, "echo", cfg.Rounds); err != nil {
			return nil, err
		}
	}
	rep.BrokerAfter = stack.BrokerStats()
	rep.print(out)
	return rep, nil
}

// startProfile starts a CPU profile into path ("" does nothing) and returns its stop.
func startProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// device is one simulated camera.
type device struct {
	id           string
	key          *identity.DeviceKey
	requestTopic string
	replyTopic   string
	client       *mqttclient.Client
	replies      chan []byte
}

type fleet struct {
	devices []*device
	timeout time.Duration
}

// connectFleet connects the devices, each subscribed to its reply topic.
func connectFleet(ctx context.Context, stack *inproc.Stack, cfg Config) (*fleet, error) {
	f := &fleet{devices: make([]*device, cfg.Devices), timeout: cfg.ReplyTimeout}
	scheme := stack.Topics()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.ConnectConcurrency)
	for i := range f.devices {
		id := fmt.Sprintf("bench-%05d", i)
		d := &device{
			id: id, key: (*identity.DeviceKey)(stack.DeviceKey(id)),
			requestTopic: scheme.AuthRequest(id), replyTopic: scheme.AuthReply(id),
			replies: make(chan []byte, 4),
		}
		f.devices[i] = d
		g.Go(func() error { return d.connect(gctx, stack.BrokerURL()) })
	}
	if err := g.Wait(); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (d *device) connect(ctx context.Context, url string) error {
	c, err := mqttclient.New(mqttclient.Config{
		BrokerURL: url,
		ClientID:  d.id,
		Credentials: func() (string, string) {
			return d.id, d.key.Password(time.Now())
		},
		NoReconnect:    true,
		ConnectTimeout: 30 * time.Second,
		KeepAlive:      2 * time.Minute,
		Subscriptions: []mqttclient.Subscription{{Filter: d.replyTopic, QoS: 1, Handler: func(m mqttclient.Message) {
			select {
			case d.replies <- m.Payload():
			default: // a device has one request out at a time: more is a stale duplicate
			}
		}}},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", d.id, err)
	}
	d.client = c
	if err := c.Connect(ctx); err != nil {
		return fmt.Errorf("%s: connect: %w", d.id, err)
	}
	return nil
}

func (f *fleet) close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, d := range f.devices {
		if d == nil || d.client == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			d.client.Close()
			<-sem
		}()
	}
	wg.Wait()
}

// sample is one device's results in a phase.
type sample struct {
	latencies []time.Duration
	codes     map[string]int
	failures  map[string]int
	timeouts  int
}

// run makes every device ask rounds times, all devices at once, and measures.
func (f *fleet) run(ctx context.Context, name string, rounds int) (*Phase, error) {
	samples := make([]sample, len(f.devices))
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range f.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			samples[i] = d.ask(ctx, rounds, f.timeout)
		}()
	}
	cpu0 := processCPU()
	t0 := time.Now()
	close(begin)
	wg.Wait()
	wall := time.Since(t0)
	cpu := processCPU() - cpu0
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	p := &Phase{Name: name, Wall: wall, CPU: cpu, Codes: map[string]int{}, Failures: map[string]int{}}
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s.latencies...)
		p.Timeouts += s.timeouts
		for c, n := range s.codes {
			p.Codes[c] += n
		}
		for c, n := range s.failures {
			p.Failures[c] += n
		}
	}
	p.RoundTrips = len(all)
	slices.Sort(all)
	p.P50, p.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return p, nil
}

// processCPU returns the CPU time this process has used (0 where unsupported).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the nearest-rank percentile q (0..1] of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// ask makes rounds requests one after the other, each signed with a fresh nonce and
// timestamp, and opens sealed credentials as the device kit does.
func (d *device) ask(ctx context.Context, rounds int, timeout time.Duration) sample {
	s := sample{codes: map[string]int{}, failures: map[string]int{}}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for range rounds {
		req, nonce, payload, err := d.sign()
		if err != nil {
			s.failures["sign: "+err.Error()]++
			continue
		}
		t0 := time.Now()
		tok := d.client.Publish(d.requestTopic, 1, false, payload)
		timer.Reset(timeout)
		var reply *protocol.AuthReply
	waiting:
		for {
			select {
			case b := <-d.replies:
				r, err := protocol.DecodeAuthReply(b)
				if err != nil {
					s.failures["malformed reply"]++
					continue
				}
				if r.ID == req.ID {
					reply = r
					break waiting
				}
			case <-timer.C:
				break waiting
			case <-ctx.Done():
				return s
			}
		}
		if reply == nil {
			s.timeouts++
		} else {
			if reply.OK {
				if !d.open(req, nonce, reply) {
					s.failures["credentials do not open"]++
				}
			}
			s.latencies = append(s.latencies, time.Since(t0))
			code := "ok"
			if !reply.OK && reply.Error != nil {
				code = string(reply.Error.Code)
			}
			s.codes[code]++
		}
		if tok.WaitTimeout(0) && tok.Error() != nil {
			s.failures["publish: "+tok.Error().Error()]++
		}
	}
	return s
}

func (d *device) sign() (*protocol.AuthRequest, []byte, []byte, error) {
	var b [protocol.NonceSize + 16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, nil, nil, err
	}
	nonce := b[:protocol.NonceSize]
	req := &protocol.AuthRequest{
		V:      protocol.Version,
		ID:     base64.RawURLEncoding.EncodeToString(b[protocol.NonceSize:]),
		Device: d.id,
		TS:     time.Now().UTC().Format(time.RFC3339Nano),
		Nonce:  base64.RawURLEncoding.EncodeToString(nonce),
		Mode:   "w",
		KID:    d.key.KeyID,
	}
	req.Sig = identity.Sign(d.key.Request, req.SigningString())
	payload, err := json.Marshal(req)
	return req, nonce, payload, err
}

// open opens the sealed credentials of reply (or checks the plain ones).
func (d *device) open(req *protocol.AuthRequest, nonce []byte, reply *protocol.AuthReply) bool {
	if reply.Sealed == "" {
		return reply.Credentials != nil
	}
	sealed, err := base64.RawURLEncoding.DecodeString(reply.Sealed)
	if err != nil {
		return false
	}
	plain, err := identity.Open(d.key.Request, nonce, sealed, tokenworker.ReplyAAD(d.id, req.ID))
	if err != nil {
		return false
	}
	_, err = protocol.DecodeCredentials(plain)
	return err == nil
}

// startEcho connects an echo worker: a client of the token worker service account in the
// workers' shared-subscription group that answers every request at once with a fixed
// refusal (unavailable), without verifying it or calling STS.
func startEcho(ctx context.Context, stack *inproc.Stack, n int) (*mqttclient.Client, error) {
	scheme := stack.Topics()
	user, pw := stack.ServiceAccount(topics.RoleTokenWorker)
	var c *mqttclient.Client
	handler := func(m mqttclient.Message) {
		kind, dev, ok := scheme.Parse(m.Topic())
		if !ok || kind != topics.KindAuthRequest {
			return
		}
		req, err := protocol.DecodeAuthRequest(m.Payload())
		if err != nil {
			return
		}
		b, err := json.Marshal(&protocol.AuthReply{
			V: protocol.Version, ID: req.ID, ServerTime: time.Now().UTC(),
			Error: &protocol.ReplyError{Code: protocol.CodeUnavailable, Message: "echo worker", RetryAfterMs: 1000},
		})
		if err != nil {
			return
		}
		c.Publish(scheme.AuthReply(dev), 1, false, b) // not waited for: inside a handler
	}
	c, err := mqttclient.New(mqttclient.Config{
		BrokerURL:      stack.BrokerURL(),
		ClientID:       broker.ServiceClientID(user, fmt.Sprintf("echo-%d", n)),
		Username:       user,
		Password:       pw,
		NoReconnect:    true,
		ConnectTimeout: 30 * time.Second,
		Subscriptions:  []mqttclient.Subscription{{Filter: scheme.WorkerFilter(topics.DefaultWorkerGroup), QoS: 1, Handler: handler}},
	})
	if err != nil {
		return nil, fmt.Errorf("echo worker %d: %w", n, err)
	}
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("echo worker %d: %w", n, err)
	}
	return c, nil
}

func (r *Report) print(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tround trips\ttimeouts\twall\tround trips/s\twith credentials/s\tp50\tp99\tCPU/round trip\treplies\t")
	for _, p := range []*Phase{r.WarmReal, r.Real, r.WarmEcho, r.Echo} {
		if p == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%.0f\t%.0f\t%v\t%v\t%v\t%s\t\n", p.Name, p.RoundTrips, p.Timeouts,
			p.Wall.Round(time.Millisecond), p.Rate(), p.OKRate(), p.P50.Round(10*time.Microsecond), p.P99.Round(10*time.Microsecond),
			p.CPUPerRoundTrip().Round(time.Microsecond), counts(p.Codes))
	}
	tw.Flush()
	for _, p := range []*Phase{r.WarmReal, r.Real, r.WarmEcho, r.Echo} {
		if p != nil && len(p.Failures) > 0 {
			fmt.Fprintf(out, "%s: device-side failures: %s\n", p.Name, counts(p.Failures))
		}
	}
	if r.Real != nil && r.Echo != nil && r.Echo.Rate() > 0 {
		// Only replies with credentials count for the real workers: a busy reply is a cheap
		// refusal, not a token round trip.
		fmt.Fprintf(out, "ratio real (with credentials) / echo round trips per second: %.2f (target >= 0.5)\n", r.Real.OKRate()/r.Echo.Rate())
		if c := r.Real.CPUPerRoundTrip(); c > 0 {
			fmt.Fprintf(out, "ratio by CPU per round trip, echo / real: %.2f\n", float64(r.Echo.CPUPerRoundTrip())/float64(c))
		}
	}
	for i, st := range r.WorkerStats {
		fmt.Fprintf(out, "token worker %d: %d requests, %d ok (%d reused), %d STS calls, errors %v\n",
			i, st.Requests, st.OK, st.Reused, st.STSCalls, st.Errors)
	}
	b, a := r.BrokerBefore, r.BrokerAfter
	fmt.Fprintf(out, "broker during the phases: %d messages received, %d sent, %d dropped (queue full), %d dropped (inflight)\n",
		a.MessagesReceived-b.MessagesReceived, a.MessagesSent-b.MessagesSent,
		a.MessagesDropped-b.MessagesDropped, a.InflightDropped-b.InflightDropped)
}

// counts formats a code histogram as "a=1 b=2", sorted by code.
func counts(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
