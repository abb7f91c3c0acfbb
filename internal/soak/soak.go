package soak

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/faultnet"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Fault kinds.
const (
	FaultBrokerRestart = "broker-restart"
	FaultWorkerRestart = "worker-restart"
	FaultPartition     = "partition"
	FaultCloudRestart  = "cloud-restart"
)

// Config configures a soak run. Zero values take the defaults noted.
type Config struct {
	// Devices is the number of simulated cameras (default 10); Clips the number of clip
	// files each one has (default 4). A device uploads its clips in turn, under new names
	// each round, until Duration has passed.
	Devices, Clips int
	// Duration is how long new uploads start (default 5m). Drain is how much longer the
	// devices may take to finish their last clips and the events to arrive (default 2m).
	Duration, Drain time.Duration
	// Interval is the pause between two uploads of a device (default 1s).
	Interval time.Duration
	// SmallSize is the size of most clips (default 32 KiB); every LargeEvery-th clip of a
	// device (default 4; 0 = none) is LargeSize (default 450 KiB) and goes up in parts of
	// PartSize (default devicekit.MinPartSize).
	SmallSize, LargeSize, PartSize int64
	LargeEvery                     int
	// Workers is the number of token workers (default 2).
	Workers int
	// Faults are the kinds injected (any of the Fault* constants); FaultInterval is the mean
	// pause between two faults (default 20s). No faults: nil or empty.
	Faults        []string
	FaultInterval time.Duration
	// MaxPartition bounds a partition's length (default 30s); MaxDown bounds how long a
	// stopped part stays down (default 5s).
	MaxPartition, MaxDown time.Duration
	// Dir is the working directory (clips, cluster data); "" = a temporary directory,
	// removed at the end.
	Dir string
	// Progress, when set, gets a status line every ProgressEvery (default 30s) and a line
	// per fault.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Logger receives the components' logs; the zero value discards them.
	Logger zerolog.Logger
}

// ErrConfig is wrapped by the errors Run returns for a bad Config.
var ErrConfig = errors.New("soak: invalid config")

// applyDefaults fills in the zero values.
func (c *Config) applyDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Devices, 10)
	def(&c.Clips, 4)
	def(&c.Workers, 2)
	defDur(&c.Duration, 5*time.Minute)
	defDur(&c.Drain, 2*time.Minute)
	defDur(&c.Interval, time.Second)
	defDur(&c.FaultInterval, 20*time.Second)
	defDur(&c.MaxPartition, 30*time.Second)
	defDur(&c.MaxDown, 5*time.Second)
	defDur(&c.ProgressEvery, 30*time.Second)
	if c.SmallSize == 0 {
		c.SmallSize = 32 << 10
	}
	if c.LargeSize == 0 {
		c.LargeSize = 450 << 10
	}
	if c.PartSize == 0 {
		c.PartSize = devicekit.MinPartSize
	}
}

// validate checks a Config after applyDefaults; its errors wrap ErrConfig.
func (c *Config) validate() error {
	for _, check := range []func() error{c.validateCounts, c.validateDurations, c.validateSizes, c.validateFaults} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateCounts checks the numbers of devices, clips and workers.
func (c *Config) validateCounts() error {
	switch {
	case c.Devices < 1 || c.Devices > 1000:
		return fmt.Errorf("%w: devices %d: want 1 to 1000", ErrConfig, c.Devices)
	case c.Clips < 1 || c.Clips > 1000:
		return fmt.Errorf("%w: clips %d: want 1 to 1000", ErrConfig, c.Clips)
	case c.Workers < 1 || c.Workers > 64:
		return fmt.Errorf("%w: workers %d: want 1 to 64", ErrConfig, c.Workers)
	}
	return nil
}

// validateDurations checks that every duration is positive, and the fault interval, the
// partition bound and the progress period at least a second.
func (c *Config) validateDurations() error {
	if c.Duration < 0 || c.Drain < 0 || c.Interval < 0 || c.FaultInterval < time.Second ||
		c.MaxPartition < time.Second || c.MaxDown < 0 || c.ProgressEvery < time.Second {
		return fmt.Errorf("%w: durations must be positive (fault interval, max partition and progress at least 1s)", ErrConfig)
	}
	return nil
}

// validateSizes checks the clip sizes, the part size and LargeEvery.
func (c *Config) validateSizes() error {
	switch {
	case c.SmallSize < 1 || c.LargeSize < 1 || c.SmallSize > 1<<30 || c.LargeSize > 1<<30:
		return fmt.Errorf("%w: clip sizes: want 1 byte to 1 GiB", ErrConfig)
	case c.PartSize < devicekit.MinPartSize || c.PartSize > c.LargeSize:
		return fmt.Errorf("%w: part size %d: want %d to the large clip size %d", ErrConfig, c.PartSize, devicekit.MinPartSize, c.LargeSize)
	case c.LargeEvery < 0:
		return fmt.Errorf("%w: large-every %d is negative", ErrConfig, c.LargeEvery)
	}
	return nil
}

// validateFaults checks that every fault kind is known.
func (c *Config) validateFaults() error {
	for _, f := range c.Faults {
		switch f {
		case FaultBrokerRestart, FaultWorkerRestart, FaultPartition, FaultCloudRestart:
		default:
			return fmt.Errorf("%w: unknown fault %q", ErrConfig, f)
		}
	}
	return nil
}

// Result is what a soak run measured.
type Result struct {
	// Uploads are the clips stored and reported done by Upload; Attempts counts Upload
	// calls, FailedAttempts those that returned an error (then retried).
	Uploads, Attempts, FailedAttempts int
	// Unfinished are clips that never uploaded by the end of the drain.
	Unfinished int
	// Delivered is how many of the uploads' event IDs the consumer received; Deliveries
	// counts every completed-event message, Duplicates the repeats (Deliveries minus
	// distinct IDs).
	Delivered, Deliveries, Duplicates int
	// Lost are uploads whose event never arrived (must be 0); LostInOutbox those of them
	// still in their device's outbox (never acknowledged by the broker), as opposed to
	// acknowledged and then lost on the way to the consumer.
	Lost, LostInOutbox int
	// LostIDs lists the lost events as "device/eventID" (at most 20).
	LostIDs []string
	// Split are clips announced as completed under more than one event ID (must be 0);
	// Unknown are completed event IDs no Upload returned.
	Split, Unknown int
	// FailedEvents are "failed" events received (one per failed attempt that could be
	// announced); Malformed messages that did not decode.
	FailedEvents, Malformed int
	// Latency of a clip: from its first attempt to the successful return of Upload.
	P50, P99, Max time.Duration
	// Faults counts the faults injected by kind.
	Faults map[string]int
	// Elapsed is the length of the run, drain included.
	Elapsed time.Duration
	// Errors samples the distinct upload errors seen (at most 20).
	Errors []string
}

// OK reports whether nothing was lost, split or left unfinished.
func (r *Result) OK() bool { return r.Lost == 0 && r.Split == 0 && r.Unfinished == 0 }

// Print writes the result as aligned lines.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "uploads          %d (attempts %d, failed attempts %d)\n", r.Uploads, r.Attempts, r.FailedAttempts)
	fmt.Fprintf(w, "events delivered %d (messages %d)\n", r.Delivered, r.Deliveries)
	fmt.Fprintf(w, "duplicates       %d\n", r.Duplicates)
	fmt.Fprintf(w, "lost             %d (still in the device outbox: %d)\n", r.Lost, r.LostInOutbox)
	for _, id := range r.LostIDs {
		fmt.Fprintf(w, "lost event       %s\n", id)
	}
	fmt.Fprintf(w, "split            %d\n", r.Split)
	fmt.Fprintf(w, "unfinished       %d\n", r.Unfinished)
	fmt.Fprintf(w, "unknown          %d\n", r.Unknown)
	fmt.Fprintf(w, "failed events    %d\n", r.FailedEvents)
	fmt.Fprintf(w, "latency          p50 %v  p99 %v  max %v\n", r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond))
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Faults[k]))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	fmt.Fprintf(w, "faults           %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "elapsed          %v\n", r.Elapsed.Round(time.Second))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error seen       %s\n", e)
	}
}

// run is the state of one soak run.
type run struct {
	cfg     Config
	cluster *inproc.Stack
	proxies []*faultnet.Proxy // one per device, in front of the broker
	start   time.Time
	stopAt  time.Time // no new clip after this
	drainAt time.Time // devices give up after this

	logMu sync.Mutex // serializes progress lines

	mu        sync.Mutex
	uploaded  map[string]*protocol.UploadEvent // event ID -> event returned by Upload
	latencies []time.Duration
	attempts  int
	failed    int
	unfinish  int
	errs      map[string]bool
	faults    map[string]int
}

// Run runs a soak: it starts a Cluster, the devices and a consumer, injects faults until
// cfg.Duration has passed, lets the devices finish and the events arrive (at most
// cfg.Drain), and returns the figures. It stops early, with what it has, if ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "clipgate-soak-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	r := &run{
		cfg:      cfg,
		uploaded: make(map[string]*protocol.UploadEvent),
		errs:     make(map[string]bool),
		faults:   make(map[string]int),
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	r.cluster, err = StartCluster(sctx, ClusterOptions{Dir: filepath.Join(dir, "cluster"), Workers: cfg.Workers, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer r.cluster.Close()
	consumer, err := NewConsumer(sctx, r.cluster, "soak")
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	files, err := r.writeClips(filepath.Join(dir, "clips"))
	if err != nil {
		return nil, err
	}
	for range cfg.Devices {
		p, err := faultnet.Listen(r.cluster.BrokerAddr())
		if err != nil {
			return nil, err
		}
		defer p.Close()
		r.proxies = append(r.proxies, p)
	}

	r.start = time.Now()
	r.stopAt = r.start.Add(cfg.Duration)
	r.drainAt = r.stopAt.Add(cfg.Drain)
	// The run ends at drainAt at the latest, whatever the parts do.
	rctx, rcancel := context.WithDeadline(ctx, r.drainAt)
	defer rcancel()

	// The kits stay open until the drain is over: a closed kit no longer flushes its outbox.
	kits := make([]*devicekit.Kit, cfg.Devices)
	defer func() {
		for _, k := range kits {
			if k != nil {
				k.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	for d := range cfg.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kits[d] = r.device(rctx, d, files[d])
		}()
	}
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		r.injectFaults(rctx)
	}()
	progressDone := make(chan struct{})
	pctx, pcancel := context.WithCancel(rctx)
	go func() {
		defer close(progressDone)
		r.progress(pctx, consumer)
	}()
	wg.Wait()
	<-faultsDone
	r.healAll(ctx)

	// Wait for the events of every upload, up to the end of the drain.
	r.mu.Lock()
	ids := make([]string, 0, len(r.uploaded))
	for id := range r.uploaded {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	consumer.WaitAll(rctx, ids)
	if rctx.Err() == nil {
		// Give late duplicates a moment, so that the count is not cut short.
		select {
		case <-time.After(2 * time.Second):
		case <-rctx.Done():
		}
	}
	pcancel()
	<-progressDone
	return r.result(consumer), nil
}

// writeClips writes each device's clip files: mostly SmallSize, every LargeEvery-th
// LargeSize; sizes vary a little so that no two devices' files are alike.
func (r *run) writeClips(dir string) ([][]string, error) {
	files := make([][]string, r.cfg.Devices)
	for d := range r.cfg.Devices {
		dd := filepath.Join(dir, fmt.Sprintf("dev-%04d", d))
		if err := os.MkdirAll(dd, 0o700); err != nil {
			return nil, err
		}
		for m := range r.cfg.Clips {
			size := r.cfg.SmallSize + int64(d*7+m)
			if r.cfg.LargeEvery > 0 && m%r.cfg.LargeEvery == r.cfg.LargeEvery-1 {
				size = r.cfg.LargeSize + int64(d*7+m)
			}
			data := make([]byte, size)
			rand.Read(data)
			p := filepath.Join(dd, fmt.Sprintf("clip-%02d.bin", m))
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return nil, err
			}
			files[d] = append(files[d], p)
		}
	}
	return files, nil
}

// recordedAt dates every clip of the run; the names keep them apart.
var recordedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// device runs one camera: it uploads its clips in turn, retrying each until it is stored
// or the drain ends. It returns its kit, still open, for the caller to close after the
// drain (nil if it could not be created).
func (r *run) device(ctx context.Context, d int, files []string) *devicekit.Kit {
	id := fmt.Sprintf("soak-%04d", d)
	cfg := r.cluster.DeviceConfig(id)
	cfg.BrokerURL = "tcp://" + r.proxies[d].Addr()
	cfg.PartSize = r.cfg.PartSize
	cfg.MultipartThreshold = min(r.cfg.LargeSize, max(r.cfg.PartSize, r.cfg.SmallSize+int64(r.cfg.Devices*7+r.cfg.Clips)+1))
	cfg.RequestTimeout = 5 * time.Second
	kit, err := devicekit.New(cfg)
	if err != nil {
		r.noteErr(err)
		return nil
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = kit.Connect(cctx)
		cancel()
		if err == nil {
			break
		}
		r.noteErr(err)
		if !sleep(ctx, backoff(attempt)) {
			return kit
		}
	}
	for round := 0; time.Now().Before(r.stopAt); round++ {
		for m, path := range files {
			if !time.Now().Before(r.stopAt) || ctx.Err() != nil {
				return kit
			}
			r.upload(ctx, kit, devicekit.Clip{Path: path, Name: fmt.Sprintf("r%05d-c%02d.bin", round, m), RecordedAt: recordedAt})
			if !sleep(ctx, jitter(r.cfg.Interval)) {
				return kit
			}
		}
	}
	return kit
}

// upload uploads one clip, calling Upload again after a failure (it resumes from the
// checkpoint under the same event ID) until it succeeds or ctx ends.
func (r *run) upload(ctx context.Context, kit *devicekit.Kit, clip devicekit.Clip) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		ev, err := kit.Upload(actx, clip)
		cancel()
		r.mu.Lock()
		r.attempts++
		if err == nil {
			r.uploaded[ev.ID] = ev
			r.latencies = append(r.latencies, time.Since(start))
			r.mu.Unlock()
			return
		}
		r.failed++
		r.mu.Unlock()
		r.noteErr(err)
		if errors.Is(err, devicekit.ErrInvalidClip) || errors.Is(err, devicekit.ErrClosed) || !sleep(ctx, backoff(attempt)) {
			r.mu.Lock()
			r.unfinish++
			r.mu.Unlock()
			return
		}
	}
}

// noteErr keeps a sample of distinct errors (their first line, IDs and all).
func (r *run) noteErr(err error) {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 20 {
		r.errs[msg] = true
	}
}

// backoff is the pause before retry attempt+1: full jitter over 0.5s·2^attempt, at
// most 10s.
func backoff(attempt int) time.Duration {
	window := min(10*time.Second, 500*time.Millisecond<<min(attempt, 10))
	return mrand.N(window) + 100*time.Millisecond
}

// jitter returns d ± 50%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + mrand.N(d+1)
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// logf writes a progress line; lines come from several goroutines.
func (r *run) logf(format string, args ...any) {
	if r.cfg.Progress == nil {
		return
	}
	line := fmt.Sprintf("%7s  %s\n", time.Since(r.start).Round(time.Second), fmt.Sprintf(format, args...))
	r.logMu.Lock()
	defer r.logMu.Unlock()
	io.WriteString(r.cfg.Progress, line)
}

// injectFaults injects a random fault of the configured kinds about every FaultInterval
// until stopAt, one at a time; each fault is undone before the next.
func (r *run) injectFaults(ctx context.Context) {
	if len(r.cfg.Faults) == 0 {
		return
	}
	for {
		wait := jitter(r.cfg.FaultInterval)
		if !time.Now().Add(wait).Before(r.stopAt) || !sleep(ctx, wait) {
			return
		}
		kind := r.cfg.Faults[mrand.N(len(r.cfg.Faults))]
		if err := r.fault(ctx, kind); err != nil {
			r.logf("fault %s: %v", kind, err)
			r.noteErr(fmt.Errorf("fault %s: %w", kind, err))
		}
		r.mu.Lock()
		r.faults[kind]++
		r.mu.Unlock()
	}
}

// downTime is how long a stopped part stays down: up to MaxDown.
func (r *run) downTime() time.Duration {
	if r.cfg.MaxDown <= 0 {
		return 0
	}
	return mrand.N(r.cfg.MaxDown + 1)
}

func (r *run) fault(ctx context.Context, kind string) error {
	c := r.cluster
	switch kind {
	case FaultBrokerRestart:
		down := r.downTime()
		r.logf("fault: broker down for %v", down.Round(time.Millisecond))
		if err := c.StopBroker(); err != nil {
			return err
		}
		sleep(ctx, down)
		return c.StartBroker()
	case FaultCloudRestart:
		down := r.downTime()
		r.logf("fault: local cloud down for %v", down.Round(time.Millisecond))
		if err := c.StopCloud(); err != nil {
			return err
		}
		sleep(ctx, down)
		return c.StartCloud()
	case FaultWorkerRestart:
		running := c.RunningWorkers()
		if len(running) == 0 {
			return errors.New("no worker running")
		}
		i := running[mrand.N(len(running))]
		down := r.downTime()
		r.logf("fault: token worker %d stopped for %v (%d running)", i, down.Round(time.Millisecond), len(running)-1)
		if err := c.StopWorker(i); err != nil {
			return err
		}
		sleep(ctx, down)
		// The replacement starts even if ctx ended: the drain needs workers.
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.StartWorkerContext(sctx)
		return err
	case FaultPartition:
		n := 1 + mrand.N(max(1, len(r.proxies)/2))
		victims := slices.Clone(r.proxies)
		mrand.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
		victims = victims[:n]
		length := time.Second + mrand.N(r.cfg.MaxPartition-time.Second+1)
		r.logf("fault: %d device(s) cut from the broker for %v", n, length.Round(time.Millisecond))
		for _, p := range victims {
			p.Partition()
		}
		sleep(ctx, length)
		for _, p := range victims {
			p.Heal()
		}
		return nil
	}
	return fmt.Errorf("unknown fault %q", kind)
}

// healAll makes sure that every part runs and no device is cut off, for the drain.
func (r *run) healAll(ctx context.Context) {
	for _, p := range r.proxies {
		p.Heal()
	}
	if err := r.cluster.StartBroker(); err == nil {
		r.logf("broker started for the drain")
	}
	if err := r.cluster.StartCloud(); err == nil {
		r.logf("local cloud started for the drain")
	}
	for len(r.cluster.RunningWorkers()) < r.cfg.Workers && ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := r.cluster.StartWorkerContext(sctx)
		cancel()
		if err != nil {
			r.noteErr(err)
			break
		}
	}
}

func (r *run) progress(ctx context.Context, consumer *Consumer) {
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		deliveries, _, _ := consumer.Snapshot()
		r.mu.Lock()
		r.logf("uploads %d, failed attempts %d, distinct events received %d", len(r.uploaded), r.failed, len(deliveries))
		r.mu.Unlock()
	}
}

// result compares what the devices uploaded with what the consumer received.
func (r *run) result(consumer *Consumer) *Result {
	deliveries, events, malformed := consumer.Snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{
		Uploads:        len(r.uploaded),
		Attempts:       r.attempts,
		FailedAttempts: r.failed,
		Unfinished:     r.unfinish,
		Malformed:      malformed,
		Faults:         make(map[string]int, len(r.faults)),
		Elapsed:        time.Since(r.start),
	}
	for k, v := range r.faults {
		res.Faults[k] = v
	}
	for id := range r.uploaded {
		if deliveries[id] > 0 {
			res.Delivered++
		} else {
			res.Lost++
			ev := r.uploaded[id]
			if len(res.LostIDs) < 20 {
				res.LostIDs = append(res.LostIDs, ev.Device+"/"+id)
			}
			state := r.cluster.DeviceConfig(ev.Device).StateDir
			if _, err := os.Stat(filepath.Join(state, "outbox", id+".json")); err == nil {
				res.LostInOutbox++
			}
		}
	}
	byKey := make(map[string]map[string]bool) // device/key -> completed event IDs
	for id, ev := range events {
		if ev.Status != protocol.StatusCompleted {
			res.FailedEvents += deliveries[id]
			continue
		}
		res.Deliveries += deliveries[id]
		res.Duplicates += deliveries[id] - 1
		if _, ok := r.uploaded[id]; !ok {
			res.Unknown++
		}
		k := ev.Device + "\x00" + ev.Key
		if byKey[k] == nil {
			byKey[k] = make(map[string]bool)
		}
		byKey[k][id] = true
	}
	for _, ids := range byKey {
		if len(ids) > 1 {
			res.Split++
		}
	}
	if n := len(r.latencies); n > 0 {
		lat := slices.Clone(r.latencies)
		slices.Sort(lat)
		res.P50 = lat[(n-1)*50/100]
		res.P99 = lat[(n-1)*99/100]
		res.Max = lat[n-1]
	}
	for e := range r.errs {
		res.Errors = append(res.Errors, e)
	}
	sort.Strings(res.Errors)
	return res
}
