//go:build unix

package devicekit_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/inproc"
)

// Device upload against the raw SDK (issue 15): each iteration uploads the same file
// twice against the same in-process stack (local OSS and STS, broker, token worker, a
// consumer of every event): once with Kit.Upload (a new clip name each time) and once
// with a plain PutObjectFromFile of the same SDK under the kit's own STS credentials (a
// new key each time). The two alternate in order, so that both see the same machine, and
// the ratio is of time and CPU summed over the same iterations.
//
// The broker's per-device publish limit (DefaultDeviceRate) is lifted: it caps a device
// at about 10 uploads per second whatever the kit costs (see README, "Publish limits").
//
// N-...-ms/clip split the kit's wall time per clip (kit-ms/clip) by the steps of Upload.
// kit-fsyncs/clip counts the fsyncs of the kit's state writes (journal, outbox), the
// device's own; the local OSS syncs what it stores for both sides alike.
//
//	go test -run '^$' -bench 'UploadVsRawPut' -count 6 ./devicekit/
func BenchmarkUploadVsRawPut4MiB(b *testing.B)  { benchUploadVsRawPut(b, 4<<20) }
func BenchmarkUploadVsRawPut64KiB(b *testing.B) { benchUploadVsRawPut(b, 64<<10) }

// phase sums what one side of the comparison cost.
type phase struct {
	wall, cpu time.Duration
	allocs    uint64
}

// measure runs fn and adds its wall time, the process CPU time (user and system, all
// threads: the whole stack's share of the work is counted too) and the heap allocations
// of the process to p.
func (p *phase) measure(b *testing.B, fn func() error) {
	cpu0, allocs0, t0 := processCPU(b), heapAllocs(), time.Now()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	p.wall += time.Since(t0)
	p.cpu += processCPU(b) - cpu0
	p.allocs += heapAllocs() - allocs0
}

// benchKit is a connected kit on an in-process stack, the kit's credentials, and a clip
// file of size random bytes.
type benchKit struct {
	stack *inproc.Stack
	kit   *devicekit.Kit
	creds *devicekit.Credentials
	path  string
}

func newBenchKit(b *testing.B, ctx context.Context, size int, brokerConfig func(*broker.Config)) *benchKit {
	s := inproc.New(b, inproc.Options{BrokerConfig: brokerConfig})
	consumer, err := s.Consumer(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range consumer.Events() {
		}
	}()
	kit, err := devicekit.New(s.DeviceConfig("cam-bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kit.Close() })
	if err := kit.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	creds, err := kit.Credentials(ctx)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(b.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	return &benchKit{stack: s, kit: kit, creds: creds, path: path}
}

func benchUploadVsRawPut(b *testing.B, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bk := newBenchKit(b, ctx, size, func(c *broker.Config) { c.DeviceRate = -1 })
	kit, creds, path := bk.kit, bk.creds, bk.path
	client, err := oss.New(creds.OSS.Endpoint, creds.AccessKeyID, creds.AccessKeySecret,
		oss.SecurityToken(creds.SecurityToken), oss.AuthVersion(oss.AuthV4), oss.Region(creds.OSS.Region), oss.ForcePathStyle(true))
	if err != nil {
		b.Fatal(err)
	}
	bucket, err := client.Bucket(creds.OSS.Bucket)
	if err != nil {
		b.Fatal(err)
	}
	// Where the kit's time goes: the time from the previous step (or the call) to each
	// step of Upload, and from the last to its return, summed by step.
	var steps [len(uploadSteps)]time.Duration
	var last time.Time
	upload := func(i int) error {
		last = time.Now()
		stop := devicekit.SetStepHook(func(step string) {
			now := time.Now()
			steps[slices.Index(uploadSteps[:], step)] += now.Sub(last)
			last = now
		})
		_, err := kit.Upload(ctx, devicekit.Clip{Path: path, Name: fmt.Sprintf("k%07d.mp4", i)})
		stop()
		steps[len(steps)-1] += time.Since(last)
		return err
	}
	rawPut := func(i int) error {
		return bucket.PutObjectFromFile(fmt.Sprintf("%sraw/r%07d.mp4", creds.OSS.Prefix, i), path, oss.ContentType("video/mp4"))
	}
	// Warm up both paths (connections, caches).
	if err := upload(-1); err != nil {
		b.Fatal(err)
	}
	if err := rawPut(-1); err != nil {
		b.Fatal(err)
	}

	var kp, rp phase
	steps = [len(steps)]time.Duration{} // not the warm-up's
	i := 0
	syncs := devicekit.CountSyncs()
	for b.Loop() {
		if i%2 == 0 {
			kp.measure(b, func() error { return upload(i) })
			rp.measure(b, func() error { return rawPut(i) })
		} else {
			rp.measure(b, func() error { return rawPut(i) })
			kp.measure(b, func() error { return upload(i) })
		}
		i++
	}
	n := float64(i)
	b.ReportMetric(float64(syncs())/n, "kit-fsyncs/clip")
	mb := float64(size) * n / 1e6
	b.ReportMetric(mb/kp.wall.Seconds(), "kit-MB/s")
	b.ReportMetric(mb/rp.wall.Seconds(), "raw-MB/s")
	b.ReportMetric(rp.wall.Seconds()/kp.wall.Seconds(), "kit/raw")
	b.ReportMetric(float64(kp.cpu.Microseconds())/1e3/n, "kit-cpu-ms/clip")
	b.ReportMetric(float64(rp.cpu.Microseconds())/1e3/n, "raw-cpu-ms/clip")
	for i, d := range steps {
		b.ReportMetric(float64(d.Microseconds())/1e3/n, uploadStepMetrics[i])
	}
	b.ReportMetric(float64(kp.wall.Microseconds())/1e3/n, "kit-ms/clip")
	b.ReportMetric(float64(rp.wall.Microseconds())/1e3/n, "raw-ms/clip")
	b.ReportMetric(float64(kp.allocs)/n, "kit-allocs/clip")
	b.ReportMetric(float64(rp.allocs)/n, "raw-allocs/clip")
}

// uploadSteps are the steps of Upload that the kit's test hook names, then its return;
// uploadStepMetrics name the time spent reaching each.
var (
	uploadSteps       = [...]string{"journal", "stored", "outbox", "acknowledged", "announced", ""}
	uploadStepMetrics = [...]string{
		"1-journal-ms/clip", // checks, credentials, journal entry written
		"2-put-ms/clip",     // PutObject, file and CRC-64 checked
		"3-outbox-ms/clip",  // event in the outbox
		"4-ack-ms/clip",     // QoS 1 publish until the broker's PUBACK
		"5-cleanup-ms/clip", // outbox entry removed
		"6-return-ms/clip",  // journal entry removed
	}
)

// BenchmarkUpload64KiBDefaultDeviceRate uploads 64 KiB clips one after another under the
// broker's default per-device publish limit (10 a second, burst 20): past the burst the
// device announces about 10 clips a second, whatever the upload costs. paced/clip is the
// share of its publishes that the broker held back.
//
//	go test -run '^$' -bench 'BenchmarkUpload64KiBDefaultDeviceRate' -benchtime 120x ./devicekit/
func BenchmarkUpload64KiBDefaultDeviceRate(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bk := newBenchKit(b, ctx, 64<<10, nil)
	paced := bk.stack.BrokerStats().Paced
	t0 := time.Now()
	i := 0
	for b.Loop() {
		if _, err := bk.kit.Upload(ctx, devicekit.Clip{Path: bk.path, Name: fmt.Sprintf("k%07d.mp4", i)}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/time.Since(t0).Seconds(), "clips/s")
	b.ReportMetric(float64(bk.stack.BrokerStats().Paced-paced)/float64(i), "paced/clip")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}

// heapAllocs returns the number of heap objects the process has allocated so far.
func heapAllocs() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}
