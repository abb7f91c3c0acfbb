package nats_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
)

// TestEngineFigures measures the mochi broker and the 3-node NATS cluster side by side in
// one run, for BENCHMARKS.md: connects per second and heap per idle device (paho clients
// connecting as devices do: password, QoS 0 reply subscription), the token round trip
// (a device's first credentials: callout, worker, STS), and upload events indexed per
// second by the console. It is a measurement, not a check: it runs only with
// CLIPGATE_FIGURES=1.
//
//	CLIPGATE_FIGURES=1 go test -run TestEngineFigures -v -timeout 30m ./test/nats/
func TestEngineFigures(t *testing.T) {
	if os.Getenv("CLIPGATE_FIGURES") != "1" {
		t.Skip("set CLIPGATE_FIGURES=1 to measure")
	}
	for _, engine := range []string{inproc.EngineMochi, inproc.EngineNATS} {
		t.Run(engine, func(t *testing.T) { figures(t, engine) })
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func figures(t *testing.T, engine string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: engine, Workers: 2})
	c, db := startConsole(t, ctx, s)

	// Connects and idle memory.
	const idle = 1000
	before := heap()
	start := time.Now()
	var clients []paho.Client
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range idle {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("idle-%04d", i)
			cfg := s.DeviceConfig(id)
			// From 16 loopback addresses, as a fleet comes from many: the broker's
			// per-address connect limit (50/s, burst 200) would refuse one address.
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%16))}
			o := paho.NewClientOptions().AddBroker(cfg.BrokerURL).SetClientID(id).SetUsername(id).
				SetDialer(&net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}).
				SetPassword(s.DeviceKey(id).Password(time.Now())).SetProtocolVersion(4).
				SetAutoReconnect(false).SetKeepAlive(5 * time.Minute)
			cl := paho.NewClient(o)
			if tok := cl.Connect(); !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
				t.Errorf("connect %s: %v", id, tok.Error())
				return
			}
			if tok := cl.Subscribe(s.Topics().AuthReply(id), 0, func(paho.Client, paho.Message) {}); !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
				t.Errorf("subscribe %s: %v", id, tok.Error())
				return
			}
			mu.Lock()
			clients = append(clients, cl)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := heap()
	t.Logf("FIGURE %s connects: %d devices in %v = %.0f connects/s (16 at a time)", engine, idle, elapsed.Round(time.Millisecond), float64(idle)/elapsed.Seconds())
	if len(clients) != idle {
		t.Fatalf("%d of %d devices connected", len(clients), idle)
	}
	t.Logf("FIGURE %s heap per idle device (broker, and the test's paho clients): %.1f KiB", engine, float64(int64(after)-int64(before))/idle/1024)
	for _, cl := range clients {
		cl.Disconnect(0)
	}

	// Token round trip: each device's first credentials.
	const devices = 20
	var rtts []time.Duration
	kits := make([]*devicekit.Kit, devices)
	for i := range devices {
		kits[i] = newKit(t, ctx, s, deviceName(i))
		t0 := time.Now()
		if _, err := kits[i].Credentials(ctx); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	t.Logf("FIGURE %s token round trip (first credentials, STS call): median %v, max %v over %d devices", engine,
		rtts[len(rtts)/2].Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond), devices)

	// Events indexed per second: 20 devices x 10 small clips.
	const clips = 10
	var keys []string
	start = time.Now()
	for i := range devices {
		wg.Add(1)
		dir := t.TempDir()
		go func() {
			defer wg.Done()
			for n := range clips {
				ev, err := kits[i].Upload(ctx, devicekit.Clip{Path: writeClip(t, dir, fmt.Sprintf("f%d.mp4", n), 2<<10), RecordedAt: recorded})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				keys = append(keys, ev.Key)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	waitIndexed(t, ctx, db, keys)
	elapsed = time.Since(start)
	t.Logf("FIGURE %s uploads indexed: %d in %v = %.0f/s (upload, event, verify, index)", engine, len(keys), elapsed.Round(time.Millisecond), float64(len(keys))/elapsed.Seconds())
	_ = c

	// Node loss. NATS: stop node 0 (Shutdown); mochi: its one broker stops and starts
	// again at once (a second stack, whose broker can restart in place behind a proxy).
	// Then every device uploads one clip; the time until the last has its upload done
	// (reconnect, credentials if needed, event acknowledged).
	if cl := s.Cluster(); cl != nil {
		onZero := 0
		for i := range devices {
			if s.DeviceConfig(deviceName(i)).BrokerURL == cl.Nodes()[0].MQTTURL() {
				onZero++
			}
		}
		d := servedAgain(t, ctx, kits, func() { cl.Stop(0) })
		t.Logf("FIGURE %s node stopped: all %d devices (%d of them on it) uploaded again within %v", engine, devices, onZero, d.Round(time.Millisecond))
		return
	}
	r := inproc.New(t, inproc.Options{Engine: engine, Workers: 2, Restartable: true})
	rkits := make([]*devicekit.Kit, devices)
	for i := range devices {
		rkits[i] = newKit(t, ctx, r, deviceName(i))
		if _, err := rkits[i].Credentials(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d := servedAgain(t, ctx, rkits, func() {
		if err := r.RestartBroker(); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("FIGURE %s broker restarted: all %d devices uploaded again within %v", engine, devices, d.Round(time.Millisecond))
}

// servedAgain runs lose, then has every kit upload one clip, and returns the time from
// lose until the last upload is done.
func servedAgain(t *testing.T, ctx context.Context, kits []*devicekit.Kit, lose func()) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	lose()
	for _, kit := range kits {
		wg.Add(1)
		dir := t.TempDir()
		go func() {
			defer wg.Done()
			if _, err := kit.Upload(ctx, devicekit.Clip{Path: writeClip(t, dir, "after.mp4", 2<<10), RecordedAt: recorded}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}
