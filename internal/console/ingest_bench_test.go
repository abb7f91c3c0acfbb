package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/internal/protocol"
)

// BenchmarkIngest measures upload events indexed per second with verification: b.N
// events for b.N existing objects (20 devices) are published QoS 1 through the stack's
// broker with at most window outstanding; the console receives each, HEADs its object in
// the local OSS (size, CRC-64, the publisher's prefix), reads the clip's head with a
// ranged GET (these 1 KiB objects are not videos) and HEADs its poster, commits the clip
// and its dedup record to SQLite in one transaction, and only then acknowledges. The clock
// stops when every event is indexed or was dropped by the broker (mochi drops QoS 1
// deliveries when a subscriber's outbound queue is full, after acknowledging the
// publisher); then one reconciler pass must bring the index to all b.N clips.
func BenchmarkIngest(b *testing.B) {
	for _, window := range []int{16, 256} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { benchIngest(b, window, nil) })
	}
}

// BenchmarkIngestGrowth is BenchmarkIngest (window 16) with 1k, 100k and 1M clips already
// in the SQLite index (CLIPGATE_BENCH_SEEDS="1000,100000" to choose), to show how the
// ingest rate changes as the index grows. Each size's index is built once per process
// (buildBenchIndex: one transaction, 1,000 devices) and copied for every run;
// CLIPGATE_BENCH_ROUNDS=N runs the sizes N times in turn (-count would repeat each size
// back to back).
//
//	CLIPGATE_BENCH_ROUNDS=2 go test -run '^$' -bench IngestGrowth -benchtime 2000x ./internal/console
func BenchmarkIngestGrowth(b *testing.B) {
	seeds := []int{1000, 100_000, 1_000_000}
	if v := os.Getenv("CLIPGATE_BENCH_SEEDS"); v != "" {
		seeds = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("CLIPGATE_BENCH_SEEDS: %v", err)
			}
			seeds = append(seeds, n)
		}
	}
	rounds := 1
	if v := os.Getenv("CLIPGATE_BENCH_ROUNDS"); v != "" {
		var err error
		if rounds, err = strconv.Atoi(v); err != nil {
			b.Fatalf("CLIPGATE_BENCH_ROUNDS: %v", err)
		}
	}
	for range rounds { // the sizes take turns, so that the machine's load hits them alike
		for _, n := range seeds {
			b.Run(fmt.Sprintf("indexed=%d", n), func(b *testing.B) {
				db := seededCopy(b, n)
				benchIngest(b, 16, db)
			})
		}
	}
}

// cpuTime is the process's user and system CPU time so far (the whole in-process stack:
// broker, local OSS, console, publisher).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// seededIndexes holds, per size, the path of a closed SQLite file seeded with that many
// clips, built once per process in the directory TestMain removes.
var (
	seededMu      sync.Mutex
	seededIndexes = map[int]string{}
	seedDir       string
)

// seededCopy returns a copy of the index seeded with n clips, open, in b's temp dir.
func seededCopy(b *testing.B, n int) *DB {
	b.Helper()
	seededMu.Lock()
	src, ok := seededIndexes[n]
	if !ok {
		if seedDir == "" {
			var err error
			if seedDir, err = os.MkdirTemp("", "clipgate-console-seed-"); err != nil { // removed by TestMain
				seededMu.Unlock()
				b.Fatal(err)
			}
		}
		{
			src = filepath.Join(seedDir, fmt.Sprintf("seed-%d.db", n))
			start := time.Now()
			db, err := buildBenchIndex(src, n)
			if err != nil {
				seededMu.Unlock()
				b.Fatal(err)
			}
			if err := db.Close(); err != nil { // checkpoints the WAL into the file
				seededMu.Unlock()
				b.Fatal(err)
			}
			b.Logf("seeded %d clips in %s", n, time.Since(start).Round(time.Millisecond))
		}
		seededIndexes[n] = src
	}
	seededMu.Unlock()
	// not b.TempDir: its name holds the benchmark's, which may contain '#', and
	// OpenSQLite refuses such paths
	tmp, err := os.MkdirTemp("", "clipgate-ingest-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(tmp) })
	dst := filepath.Join(tmp, "console.db")
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		b.Fatal(err)
	}
	db, err := OpenSQLite(context.Background(), dst)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func benchIngest(b *testing.B, window int, db *DB) {
	e := newEnv(b, envOptions{db: db})
	scheme := e.stack.Topics()
	now := time.Now().UTC().Truncate(time.Millisecond)
	payloads := make([][]byte, b.N)
	topicsOf := make([]string, b.N)
	table := crc64.MakeTable(crc64.ECMA)
	for i := range b.N {
		dev := fmt.Sprintf("cam-%02d", i%20)
		key := fmt.Sprintf("%s%s/2026/01/02/clip-%06d.mp4", e.stack.Prefix(), dev, i)
		data := bytes.Repeat([]byte{byte(i)}, 1024)
		if err := e.bucket.PutObject(key, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		ev := protocol.UploadEvent{V: 1, ID: fmt.Sprintf("bench-%06d", i), Device: dev, Status: protocol.StatusCompleted,
			Bucket: e.stack.Bucket(), Key: key, Size: int64(len(data)),
			CRC64: strconv.FormatUint(crc64.Checksum(data, table), 10), RecordedAt: now, UploadedAt: now}
		p, err := json.Marshal(&ev)
		if err != nil {
			b.Fatal(err)
		}
		payloads[i], topicsOf[i] = p, scheme.UploadEvent(dev)
	}
	adm := e.admin()
	start, cpu0 := e.console.Stats().Indexed, cpuTime()
	dropped0 := e.stack.BrokerStats().MessagesDropped
	b.ResetTimer()
	pending := make([]mqtt.Token, 0, window)
	for i := range b.N {
		if len(pending) == window {
			if tok := pending[0]; !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				b.Fatalf("publish: %v", tok.Error())
			}
			pending = pending[1:]
		}
		pending = append(pending, adm.Publish(topicsOf[i], 1, false, payloads[i]))
	}
	deadline := time.Now().Add(2 * time.Minute)
	var indexed, dropped int64
	for {
		indexed = e.console.Stats().Indexed - start
		dropped = e.stack.BrokerStats().MessagesDropped - dropped0
		if indexed+dropped >= int64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("indexed %d and dropped %d of %d events", indexed, dropped, b.N)
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(indexed)/b.Elapsed().Seconds(), "indexed/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	b.ReportMetric(float64(dropped), "dropped")
	if st := e.console.Stats().Consumer; st.Verified < indexed {
		b.Fatalf("verified %d of %d indexed events (rejected %v)", st.Verified, indexed, st.Rejected)
	}
	// What the broker dropped, the reconciler indexes.
	n, err := e.console.Reconcile(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if int64(n) != dropped {
		b.Errorf("reconciler indexed %d clips, the broker dropped %d events", n, dropped)
	}
	if cnt, err := e.db.Device(context.Background(), "cam-00"); err != nil || cnt.Clips != int64((b.N+19)/20) {
		b.Errorf("cam-00 has %+v clips, want %d (%v)", cnt, (b.N+19)/20, err)
	}
}
