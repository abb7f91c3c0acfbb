package inproc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"hash/crc64"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

var recorded = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeClip writes n random bytes and returns the path and their CRC-64 (ECMA).
func writeClip(t *testing.T, dir, name string, n int) (string, uint64) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, crc64.Checksum(b, crc64.MakeTable(crc64.ECMA))
}

// checkObject checks an uploaded object with the admin client against size and crc.
func checkObject(t *testing.T, s *inproc.Stack, key string, size int64, crc uint64) {
	t.Helper()
	client, err := s.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	h, err := bucket.GetObjectDetailedMeta(key)
	if err != nil {
		t.Fatalf("HEAD %s: %v", key, err)
	}
	if got := h.Get("Content-Length"); got != strconv.FormatInt(size, 10) {
		t.Errorf("%s: Content-Length %s, want %d", key, got, size)
	}
	if got := h.Get(oss.HTTPHeaderOssCRC64); got != strconv.FormatUint(crc, 10) {
		t.Errorf("%s: CRC-64 %s, want %d", key, got, crc)
	}
}

// goroutinesBack waits until the number of goroutines is at most before, and fails the
// test with every goroutine's stack if that does not happen within 15 seconds.
func goroutinesBack(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines still running, %d before the stacks started:\n%s", runtime.NumGoroutine(), before, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartCloseLeavesNothingRunning starts and closes two stacks twice each, in
// parallel, and checks that no goroutine outlives them. It is deliberately not parallel
// with other tests: they would change the goroutine count.
func TestStartCloseLeavesNothingRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				dir := t.TempDir()
				var fleet []byte
				var admin string
				for round := range 2 {
					s, err := inproc.Start(ctx, inproc.Options{Dir: dir, Workers: 2})
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					t.Cleanup(func() { _ = s.Close() }) // if the test fails before Close below
					// Something real runs: the broker admits a consumer, the admin lists.
					c, err := s.Consumer(ctx, "g")
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					client, err := s.OSSClient()
					if err != nil {
						t.Fatal(err)
					}
					bucket, err := client.Bucket(s.Bucket())
					if err != nil {
						t.Fatal(err)
					}
					if _, err := bucket.ListObjects(); err != nil {
						t.Fatalf("round %d: list objects: %v", round, err)
					}
					id, _ := s.AdminKey()
					if round == 0 {
						fleet, admin = s.FleetKeys().Current().Key, id
					} else if !bytes.Equal(fleet, s.FleetKeys().Current().Key) || admin != id {
						t.Errorf("round %d: the keys in %s were not reused", round, dir)
					}
					if err := s.Close(); err != nil {
						t.Fatalf("round %d: close: %v", round, err)
					}
					if err := s.Close(); err != nil {
						t.Fatalf("round %d: second close: %v", round, err)
					}
					if _, ok := <-c.Events(); ok {
						t.Error("consumer events channel still open after the stack closed")
					}
					if _, err := os.Stat(filepath.Join(dir, "fleet.keys")); err != nil {
						t.Errorf("a given Dir must be kept: %v", err)
					}
				}
			})
		}
		t.Run("tempdir", func(t *testing.T) {
			t.Parallel()
			s, err := inproc.Start(testContext(t), inproc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			dir := s.Dir()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary dir %s not removed: %v", dir, err)
			}
		})
	})
	goroutinesBack(t, before)
}

// TestUploadAndEvents uploads a small clip (PutObject) and a large one (multipart) and
// checks the consumer's events and the stored objects.
func TestUploadAndEvents(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := inproc.New(t, inproc.Options{Workers: 2})
	consumer, err := s.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	kit := s.Kit(t, ctx, "cam-01", func(c *devicekit.Config) {
		c.PartSize = devicekit.MinPartSize
		c.MultipartThreshold = 200 << 10
	})
	dir := t.TempDir()
	type clip struct {
		name string
		size int
	}
	sent := map[string]*clipgate.UploadEvent{}
	crcs := map[string]uint64{}
	for _, c := range []clip{{"small.mp4", 50 << 10}, {"large.mp4", 450 << 10}} {
		p, crc := writeClip(t, dir, c.name, c.size)
		ev, err := kit.Upload(ctx, devicekit.Clip{Path: p, RecordedAt: recorded})
		if err != nil {
			t.Fatalf("upload %s: %v", c.name, err)
		}
		want := "clips/cam-01/2024/05/01/" + c.name
		if ev.Key != want || ev.Size != int64(c.size) || ev.CRC64 != strconv.FormatUint(crc, 10) || ev.Bucket != "clips" {
			t.Errorf("upload %s: event %+v, want key %s size %d crc %d", c.name, ev, want, c.size, crc)
		}
		sent[ev.ID] = ev
		crcs[ev.Key] = crc
		checkObject(t, s, ev.Key, int64(c.size), crc)
	}
	for len(sent) > 0 {
		got, err := consumer.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %d events: %v", len(sent), err)
		}
		want, ok := sent[got.ID]
		if !ok {
			continue // a duplicate delivery of an event already seen
		}
		if got.Status != clipgate.StatusCompleted || got.Key != want.Key || got.Size != want.Size ||
			got.CRC64 != want.CRC64 || got.Device != "cam-01" || !got.RecordedAt.Equal(recorded) {
			t.Errorf("consumer got %+v, the device sent %+v", got, want)
		}
		delete(sent, got.ID)
	}
	if n := consumer.Malformed(); n != 0 {
		t.Errorf("Malformed = %d, want 0", n)
	}
}

// TestNoPrefixCustomRootAndClock runs a stack with no key prefix, another bucket and topic
// root, and a local cloud clock 10 minutes slow, which the credentials' expiry follows.
func TestNoPrefixCustomRootAndClock(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const skew = 10 * time.Minute
	root, err := topics.New("acme/cams")
	if err != nil {
		t.Fatal(err)
	}
	s := inproc.New(t, inproc.Options{
		NoPrefix: true, Bucket: "other-bucket", Topics: root,
		Now: func() time.Time { return time.Now().Add(-skew) },
	})
	consumer, err := s.Consumer(ctx, "backend")
	if err != nil {
		t.Fatal(err)
	}
	kit := s.Kit(t, ctx, "cam.02", nil)
	creds, err := kit.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if creds.OSS.Bucket != "other-bucket" || creds.OSS.Endpoint != s.OSSEndpoint() {
		t.Errorf("OSS info %+v", creds.OSS)
	}
	// One hour from the local cloud's clock: ten minutes earlier than from the real one.
	if left := time.Until(creds.Expiration); left > time.Hour-skew+time.Minute || left < time.Hour-skew-2*time.Minute {
		t.Errorf("credentials expire in %v, want about %v", left, time.Hour-skew)
	}
	p, crc := writeClip(t, t.TempDir(), "a.bin", 1000)
	if _, err := kit.Upload(ctx, devicekit.Clip{Path: p, RecordedAt: recorded}); err != nil {
		t.Fatal(err)
	}
	ev, err := consumer.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Key != "cam.02/2024/05/01/a.bin" || ev.Bucket != "other-bucket" {
		t.Errorf("event %+v", ev)
	}
	checkObject(t, s, ev.Key, 1000, crc)
}

// TestRevokeRestore revokes a connected device (it is disconnected and refused) and
// restores it.
func TestRevokeRestore(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := inproc.New(t, inproc.Options{})
	kit := s.Kit(t, ctx, "cam-03", nil)
	if _, err := kit.Credentials(ctx); err != nil {
		t.Fatal(err)
	}
	s.Revoke("cam-03")
	if n := s.BrokerStats().RevokedDisconnects; n != 1 {
		t.Errorf("RevokedDisconnects = %d, want 1", n)
	}
	// Stop its reconnection attempts, so that it does not take over the session of the
	// kit connected after Restore.
	_ = kit.Close()
	cfg := s.DeviceConfig("cam-03")
	cfg.StateDir = t.TempDir()
	second, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	err = second.Connect(short)
	cancel()
	if err == nil {
		t.Fatal("a revoked device connected")
	}
	s.Restore("cam-03")
	third := s.Kit(t, ctx, "cam-03", func(c *devicekit.Config) { c.StateDir = t.TempDir() })
	if _, err := third.Credentials(ctx); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

// TestStopStartWorker changes the worker group while devices keep getting credentials.
func TestStopStartWorker(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	var made atomic.Int32
	s := inproc.New(t, inproc.Options{
		Workers:      2,
		WorkerConfig: func(c *tokenworker.Config) { made.Add(1); c.ReuseMargin = -1 },
	})
	if s.Workers() != 2 || made.Load() != 2 {
		t.Fatalf("Workers() = %d, hook ran %d times; want 2, 2", s.Workers(), made.Load())
	}
	if err := s.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	if err := s.StopWorker(0); err == nil {
		t.Error("stopping a stopped worker: no error")
	}
	for _, i := range []int{-1, 5} {
		if err := s.StopWorker(i); err == nil {
			t.Errorf("StopWorker(%d): no error", i)
		}
	}
	if _, err := s.Kit(t, ctx, "cam-04", nil).Credentials(ctx); err != nil {
		t.Fatalf("with worker 1 alone: %v", err)
	}
	if st, ok := s.WorkerStats(1); !ok || st.OK != 1 {
		t.Errorf("worker 1 stats %+v (running %v), want OK 1", st, ok)
	}
	i, err := s.StartWorker()
	if err != nil || i != 2 {
		t.Fatalf("StartWorker = %d, %v; want 2", i, err)
	}
	if err := s.StopWorker(1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kit(t, ctx, "cam-05", nil).Credentials(ctx); err != nil {
		t.Fatalf("with worker 2 alone: %v", err)
	}
	if st, ok := s.WorkerStats(2); !ok || st.OK != 1 {
		t.Errorf("worker 2 stats %+v (running %v), want OK 1", st, ok)
	}
	if _, ok := s.WorkerStats(0); ok {
		t.Error("WorkerStats of a stopped worker")
	}
}

// TestConsumerDropsGarbage publishes malformed events on a device's topic: the consumer
// counts and drops them and still delivers the next valid event.
func TestConsumerDropsGarbage(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := inproc.New(t, inproc.Options{})
	consumer, err := s.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	const id = "cam-06"
	opts := mqtt.NewClientOptions().AddBroker(s.BrokerURL()).SetClientID(id).SetUsername(id).
		SetPassword(s.DeviceKey(id).Password(time.Now())).SetProtocolVersion(4)
	dev := mqtt.NewClient(opts)
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer dev.Disconnect(100)
	good := clipgate.UploadEvent{V: 1, ID: "ev-1", Device: id, Status: clipgate.StatusCompleted,
		Bucket: "clips", Key: "clips/cam-06/2024/05/01/x.mp4", Size: 1, CRC64: "1",
		ContentType: "video/mp4", RecordedAt: recorded, UploadedAt: recorded, Attempts: 1}
	other := good
	other.Device = "cam-07" // not the topic's device
	otherJSON, _ := json.Marshal(other)
	goodJSON, _ := json.Marshal(good)
	for _, payload := range [][]byte{[]byte("garbage"), []byte(`{"v":2}`), otherJSON, goodJSON} {
		if tok := dev.Publish(s.Topics().UploadEvent(id), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	ev, err := consumer.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "ev-1" {
		t.Errorf("got event %+v, want ev-1", ev)
	}
	// Messages are handled concurrently: the bad ones may still be in flight.
	for deadline := time.Now().Add(10 * time.Second); consumer.Malformed() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := consumer.Malformed(); n != 3 {
		t.Errorf("Malformed = %d, want 3", n)
	}
	select {
	case ev := <-consumer.Events():
		t.Errorf("a second event got through: %+v", ev)
	default:
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts inproc.Options
		want string
	}{
		{"negative workers", inproc.Options{Workers: -1}, "Workers"},
		{"bad bucket", inproc.Options{Bucket: "Bad_Bucket"}, "bucket"},
		{"prefix without slash", inproc.Options{Prefix: "clips"}, "prefix"},
		{"prefix traversal", inproc.Options{Prefix: "../x/"}, "prefix"},
		{"NoPrefix and Prefix", inproc.Options{NoPrefix: true, Prefix: "x/"}, "NoPrefix"},
		{"negative STS rate", inproc.Options{STSRate: -1}, "STSRate"},
		{"bad OSS address", inproc.Options{OSSAddr: "127.0.0.1:notaport"}, "OSS"},
		{"bad MQTT address", inproc.Options{MQTTAddr: "256.0.0.1:0"}, "broker"},
		{"bad broker config", inproc.Options{BrokerConfig: func(c *broker.Config) { c.MaxPacketSize = 10 }}, "maxPacketSize"},
		{"bad worker config", inproc.Options{WorkerConfig: func(c *tokenworker.Config) { c.ClientID = "looks-like-a-device" }}, "device ID"},
		{"Dir is a file", inproc.Options{Dir: file}, "Dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := inproc.Start(testContext(t), tc.opts)
			if err == nil {
				_ = s.Close()
				t.Fatalf("Start succeeded, want an error about %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestBadKeyFiles starts stacks on directories whose key files are damaged: each is refused
// with an error naming the file, and nothing in the directory is overwritten.
func TestBadKeyFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file, content string
		mode                os.FileMode
		want                string
	}{
		{"keys garbage", "keys.json", "not json", 0o600, "keys.json"},
		{"keys unknown field", "keys.json", `{"ossAdmin":{"id":"a","secret":"bbbbbbbb"},"x":1}`, 0o600, "unknown field"},
		{"keys missing password", "keys.json", `{"ossAdmin":{"id":"a","secret":"bbbbbbbb"},"stsCaller":{"id":"b","secret":"bbbbbbbb"},"passwords":{}}`, 0o600, "passwords"},
		{"keys bad id", "keys.json", `{"ossAdmin":{"id":"a b","secret":"bbbbbbbb"}}`, 0o600, "ossAdmin"},
		{"keys world readable", "keys.json", `{}`, 0o644, "chmod"},
		{"fleet keys garbage", "fleet.keys", "short", 0o600, "fleet.keys"},
		{"fleet keys world readable", "fleet.keys", "k1 " + strings.Repeat("ab", 32), 0o644, "fleet.keys"},
		{"fleet keys old raw key", "fleet.keys", strings.Repeat("ab", 32), 0o600, "fleet.keys"},
		{"fleet keys two current", "fleet.keys", "k1 " + strings.Repeat("ab", 32) + "\nk2 " + strings.Repeat("cd", 32) + "\n", 0o600, "current"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			s, err := inproc.Start(testContext(t), inproc.Options{Dir: dir})
			if err == nil {
				_ = s.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Errorf("%s was changed to %q", tc.file, got)
			}
		})
	}
}

func TestAccessorsAndClosed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := inproc.New(t, inproc.Options{})
	for role, name := range map[topics.Role]string{topics.RoleTokenWorker: "tokenworker", topics.RoleConsumer: "consumer", topics.RoleAdmin: "admin"} {
		if u, p := s.ServiceAccount(role); u != name || len(p) < 16 {
			t.Errorf("ServiceAccount(%v) = %q, %q", role, u, p)
		}
	}
	if u, p := s.ServiceAccount(topics.RoleDevice); u != "" || p != "" {
		t.Errorf("ServiceAccount(device) = %q, %q; want empty", u, p)
	}
	if !strings.HasPrefix(s.BrokerURL(), "tcp://127.0.0.1:") || !strings.HasPrefix(s.OSSEndpoint(), "http://127.0.0.1:") ||
		!strings.HasPrefix(s.STSEndpoint(), "127.0.0.1:") || !strings.HasPrefix(s.BrokerHTTPAddr(), "127.0.0.1:") {
		t.Errorf("endpoints %s %s %s %s", s.BrokerURL(), s.OSSEndpoint(), s.STSEndpoint(), s.BrokerHTTPAddr())
	}
	if s.Bucket() != "clips" || s.Prefix() != "clips/" || s.Topics().Root() != "clipgate/v1" ||
		s.RoleARN() != "acs:ram::1000000000000000:role/clipgate-device" || s.Region() != "cn-hangzhou" {
		t.Errorf("defaults: %s %s %s %s %s", s.Bucket(), s.Prefix(), s.Topics().Root(), s.RoleARN(), s.Region())
	}
	cfg := s.DeviceConfig("../../etc")
	if !strings.HasPrefix(cfg.StateDir, filepath.Join(s.Dir(), "devices")+string(filepath.Separator)) {
		t.Errorf("DeviceConfig state dir %s escapes the stack dir", cfg.StateDir)
	}
	if _, err := devicekit.New(cfg); err == nil {
		t.Error("devicekit accepted an invalid device ID")
	}
	// Without Restartable no part stops alone: the stack keeps serving.
	if err := s.StopBroker(); err == nil {
		t.Error("StopBroker without Restartable succeeded")
	}
	if err := s.StopCloud(); err == nil {
		t.Error("StopCloud without Restartable succeeded")
	}
	if st := s.BrokerStats(); st.ClientsConnected < 1 {
		t.Errorf("broker stats after the refused stops: %+v, want the worker connected", st)
	}
	consumer, err := s.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer(ctx, "bad/group"); err == nil {
		t.Error("Consumer accepted an invalid group")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer(ctx, ""); !errors.Is(err, inproc.ErrClosed) {
		t.Errorf("Consumer after Close: %v, want ErrClosed", err)
	}
	if _, err := consumer.Next(ctx); !errors.Is(err, inproc.ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
	if _, err := s.StartWorker(); !errors.Is(err, inproc.ErrClosed) {
		t.Errorf("StartWorker after Close: %v, want ErrClosed", err)
	}
}
