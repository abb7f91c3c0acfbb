package devstack

import (
	"context"
	"crypto/rand"
	"fmt"
	"hash/crc64"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Demo defaults. Clips are small so that the demo takes seconds; the last clip of each
// camera is above the multipart threshold, so both upload paths run.
const (
	DefaultDemoDevices     = 5
	DefaultDemoClips       = 3
	DefaultDemoTimeout     = 2 * time.Minute
	demoPartSize           = devicekit.MinPartSize // 100 KiB
	demoMultipartThreshold = 256 << 10
	demoSmallMin           = 100 << 10
	demoSmallMax           = 250 << 10
	demoLargeMin           = 300 << 10
	demoLargeMax           = 600 << 10
	// demoUploadRate caps the first camera's uploads (devicekit.Config.UploadRate).
	demoUploadRate = 1 << 20
	// MaxDemoDevices and MaxDemoClips keep a typo from filling the disk.
	MaxDemoDevices = 1000
	MaxDemoClips   = 100
)

// DemoConfig configures Demo. Unlike Start, empty addresses mean random loopback ports
// and an empty Dir a temporary directory (removed at the end), so that a demo never
// collides with a running devstack.
type DemoConfig struct {
	Config
	Devices int           // simulated cameras; default DefaultDemoDevices
	Clips   int           // clips per camera; default DefaultDemoClips
	Timeout time.Duration // for the whole demo; default DefaultDemoTimeout

	afterStart func(*inproc.Stack) // test hook: runs once the stack is up
}

// DemoResult sums up a demo.
type DemoResult struct {
	Devices   int
	Uploads   int   // clips uploaded and announced by the devices
	Multipart int   // of Uploads, those sent as multipart uploads
	Events    int   // distinct upload events the consumer received
	Indexed   int   // uploads found in the console's index
	Bytes     int64 // bytes uploaded
	Failures  []string
	Elapsed   time.Duration
}

// expected is what the consumer and the object store must show for one upload.
type expected struct {
	device, key string
	size        int64
	crc         uint64
}

// Demo starts a stack, runs cfg.Devices simulated cameras that each upload cfg.Clips
// generated clips while a consumer prints every upload event as a line, then checks
// every object (size and CRC-64 through the admin OSS client) and that every upload was
// announced, and prints a summary. It returns an error if anything failed.
func Demo(ctx context.Context, cfg DemoConfig, stdout io.Writer) (*DemoResult, error) {
	start := time.Now()
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	out := &printer{w: stdout}

	s, err := inproc.Start(ctx, inproc.Options{
		Dir: cfg.Dir, Workers: cfg.Workers, Bucket: cfg.Bucket, Prefix: cfg.Prefix,
		MQTTAddr: cfg.MQTTAddr, HTTPAddr: cfg.HTTPAddr, OSSAddr: cfg.OSSAddr, STSAddr: cfg.STSAddr,
		Engine: cfg.Engine, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	out.printf("demo: stack up (MQTT %s, OSS %s, %d token workers); %d cameras x %d clips\n",
		s.BrokerURL(), s.OSSEndpoint(), s.Workers(), cfg.Devices, cfg.Clips)

	con, err := startConsole(ctx, s, s.Dir(), cfg.ConsoleAddr, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer con.Close()
	out.printf("demo: console at %s (log in as %s, password %s)\n", con.URL(), console.DefaultAdminName, con.Password)
	if cfg.afterStart != nil {
		cfg.afterStart(s)
	}
	consumer, err := s.Consumer(ctx, "")
	if err != nil {
		return nil, err
	}
	received := map[string]*protocol.UploadEvent{}
	var recvMu sync.Mutex
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for ev := range consumer.Events() {
			recvMu.Lock()
			_, dup := received[ev.ID]
			received[ev.ID] = ev
			recvMu.Unlock()
			if !dup {
				out.printf("event   %-8s %-9s %s  %d bytes  crc64 %s\n", ev.Device, ev.Status, ev.Key, ev.Size, ev.CRC64)
			}
		}
	}()

	clipDir, err := os.MkdirTemp("", "devstack-demo-clips-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(clipDir)

	res := &DemoResult{Devices: cfg.Devices}
	var mu sync.Mutex // guards res and want
	want := map[string]expected{}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		mu.Lock()
		res.Failures = append(res.Failures, msg)
		mu.Unlock()
		out.printf("FAIL    %s\n", msg)
	}
	var wg sync.WaitGroup
	for i := range cfg.Devices {
		id := fmt.Sprintf("cam-%02d", i+1)
		wg.Go(func() {
			runCamera(ctx, s, id, cfg.Clips, clipDir, out, fail, func(ev *protocol.UploadEvent, crc uint64, multipart bool) {
				mu.Lock()
				defer mu.Unlock()
				want[ev.ID] = expected{device: id, key: ev.Key, size: ev.Size, crc: crc}
				res.Uploads++
				res.Bytes += ev.Size
				if multipart {
					res.Multipart++
				}
			})
		})
	}
	wg.Wait()

	// Every announced upload must reach the consumer.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for missing := -1; missing != 0; {
		recvMu.Lock()
		missing = 0
		for id := range want {
			if _, ok := received[id]; !ok {
				missing++
			}
		}
		recvMu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-ctx.Done():
			fail("%d upload events did not reach the consumer: %v", missing, ctx.Err())
			missing = 0
		case <-poll.C:
		}
	}
	_ = consumer.Close()
	<-consumed

	verify(s, want, received, fail)
	// Every upload must appear in the console.
	var keys []string
	for _, w := range want {
		keys = append(keys, w.key)
	}
	missing := con.waitIndexed(ctx, keys)
	for _, k := range missing {
		fail("%s: not in the console's index", k)
	}
	res.Indexed = len(keys) - len(missing)
	out.printf("demo: %d of %d clips in the console at %s\n", res.Indexed, len(keys), con.URL())
	res.Events = len(received)
	res.Elapsed = time.Since(start)
	sort.Strings(res.Failures)
	out.printf("demo: %d cameras, %d uploads (%d multipart), %d events, %s, %d failures, %v\n",
		res.Devices, res.Uploads, res.Multipart, res.Events, humanBytes(res.Bytes), len(res.Failures),
		res.Elapsed.Round(time.Millisecond))
	if n := len(res.Failures); n > 0 {
		return res, fmt.Errorf("demo: %d failures", n)
	}
	return res, nil
}

// applyDefaults fills in the empty addresses and the zero counts and timeout.
func (c *DemoConfig) applyDefaults() {
	for _, a := range []*string{&c.MQTTAddr, &c.HTTPAddr, &c.OSSAddr, &c.STSAddr, &c.ConsoleAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Devices == 0 {
		c.Devices = DefaultDemoDevices
	}
	if c.Clips == 0 {
		c.Clips = DefaultDemoClips
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultDemoTimeout
	}
}

// validate checks c after applyDefaults.
func (c *DemoConfig) validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("devstack: workers %d: at least 1", c.Workers)
	case c.Devices < 1 || c.Devices > MaxDemoDevices:
		return fmt.Errorf("devstack: devices %d: 1 to %d", c.Devices, MaxDemoDevices)
	case c.Clips < 1 || c.Clips > MaxDemoClips:
		return fmt.Errorf("devstack: clips %d: 1 to %d", c.Clips, MaxDemoClips)
	case c.Timeout < 0:
		return fmt.Errorf("devstack: timeout %v is negative", c.Timeout)
	}
	return nil
}

// runCamera connects one simulated camera and uploads its clips one after the other.
func runCamera(ctx context.Context, s *inproc.Stack, id string, clips int, dir string, out *printer,
	fail func(string, ...any), done func(*protocol.UploadEvent, uint64, bool)) {
	cfg := s.DeviceConfig(id)
	cfg.PartSize = demoPartSize
	cfg.MultipartThreshold = demoMultipartThreshold
	cfg.StopWhenRefused = true // a revoked demo camera is reported now, not at the timeout
	if id == "cam-01" {
		cfg.UploadRate = demoUploadRate
		out.printf("camera  %-8s uploads capped at %s/s\n", id, humanBytes(demoUploadRate))
	}
	kit, err := devicekit.New(cfg)
	if err != nil {
		fail("%s: %v", id, err)
		return
	}
	defer kit.Close()
	if err := kit.Connect(ctx); err != nil {
		fail("%s: %v", id, err)
		return
	}
	for j := range clips {
		size := demoSmallMin + mrand.IntN(demoSmallMax-demoSmallMin)
		if j == clips-1 {
			size = demoLargeMin + mrand.IntN(demoLargeMax-demoLargeMin)
		}
		name := fmt.Sprintf("%s-clip-%04d.mp4", id, j+1)
		path := filepath.Join(dir, name)
		crc, err := writeRandomFile(path, size)
		if err != nil {
			fail("%s: %v", id, err)
			return
		}
		ev, err := kit.Upload(ctx, devicekit.Clip{Path: path, Name: fmt.Sprintf("clip-%04d.mp4", j+1), RecordedAt: time.Now().UTC()})
		_ = os.Remove(path)
		if err != nil {
			fail("%s: upload: %v", id, err)
			continue
		}
		multipart := int64(size) >= demoMultipartThreshold
		how := "put"
		if multipart {
			how = "multipart"
		}
		out.printf("upload  %-8s %-9s %s  %d bytes  (%s, attempt %d)\n", id, ev.Status, ev.Key, ev.Size, how, ev.Attempts)
		if ev.CRC64 != strconv.FormatUint(crc, 10) {
			fail("%s: %s: the event's CRC-64 %s is not the file's %d", id, ev.Key, ev.CRC64, crc)
		}
		done(ev, crc, multipart)
		if j == clips-1 {
			readBack(ctx, kit, id, ev.Key, crc, out, fail)
		}
	}
}

// readBack reads a camera's clip back through its kit (mode r credentials, ranged GETs)
// and checks its CRC-64.
func readBack(ctx context.Context, kit *devicekit.Kit, id, key string, crc uint64, out *printer, fail func(string, ...any)) {
	r, err := kit.Open(ctx, key)
	if err != nil {
		fail("%s: read back %s: %v", id, key, err)
		return
	}
	defer r.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, r)
	switch {
	case err != nil:
		fail("%s: read back %s: %v", id, key, err)
	case h.Sum64() != crc:
		fail("%s: read back %s: CRC-64 %d, uploaded %d", id, key, h.Sum64(), crc)
	default:
		out.printf("readback %-7s %s  %d bytes  %s object, CRC-64 matches\n", id, key, n, r.Info().Type)
	}
}

// writeRandomFile writes size random bytes to path and returns their CRC-64 (ECMA).
func writeRandomFile(path string, size int) (uint64, error) {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return 0, err
	}
	return crc64.Checksum(b, crc64.MakeTable(crc64.ECMA)), nil
}

// verify checks every expected object through the admin OSS client, and the received
// events against what the devices sent.
func verify(s *inproc.Stack, want map[string]expected, received map[string]*protocol.UploadEvent, fail func(string, ...any)) {
	client, err := s.OSSClient()
	if err != nil {
		fail("admin OSS client: %v", err)
		return
	}
	bucket, err := client.Bucket(s.Bucket())
	if err != nil {
		fail("admin OSS client: %v", err)
		return
	}
	for id, w := range want {
		if ev, ok := received[id]; ok && (ev.Key != w.key || ev.Size != w.size || ev.CRC64 != strconv.FormatUint(w.crc, 10) || ev.Device != w.device) {
			fail("event %s differs from the upload: %s %d %s, want %s %d %d", id, ev.Key, ev.Size, ev.CRC64, w.key, w.size, w.crc)
		}
		h, err := bucket.GetObjectDetailedMeta(w.key)
		if err != nil {
			fail("%s: HEAD: %v", w.key, err)
			continue
		}
		if got := h.Get("Content-Length"); got != strconv.FormatInt(w.size, 10) {
			fail("%s: stored size %s, want %d", w.key, got, w.size)
		}
		if got := h.Get(oss.HTTPHeaderOssCRC64); got != strconv.FormatUint(w.crc, 10) {
			fail("%s: stored CRC-64 %s, want %d", w.key, got, w.crc)
		}
	}
	for id, ev := range received {
		// A "failed" event announces an upload whose error was already counted.
		if _, ok := want[id]; !ok && ev.Status != protocol.StatusFailed {
			fail("unexpected event %s: %s %s %s", id, ev.Device, ev.Status, ev.Key)
		}
	}
}

// printer writes lines from several goroutines without interleaving them.
type printer struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
