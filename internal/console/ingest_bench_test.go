package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc64"
	"strconv"
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
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { benchIngest(b, window) })
	}
}

func benchIngest(b *testing.B, window int) {
	e := newEnv(b, envOptions{})
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
	start := e.console.Stats().Indexed
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
