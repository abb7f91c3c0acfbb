package devicekit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

func mustStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func checkCompleted(t *testing.T, s *stack, k *Kit, ev *clipgate.UploadEvent, name string, data []byte, recorded time.Time) {
	t.Helper()
	wantKey := testPrefix + k.cfg.DeviceID + "/" + recorded.UTC().Format("2006/01/02") + "/" + name
	if ev.Status != clipgate.StatusCompleted || ev.Key != wantKey || ev.Bucket != testBucket ||
		ev.Size != int64(len(data)) || ev.CRC64 != testutil.CRC64(data) || ev.Device != k.cfg.DeviceID ||
		ev.Error != "" || ev.UploadedAt.IsZero() || !ev.RecordedAt.Equal(recorded.UTC()) {
		t.Fatalf("event %+v; want key %s, size %d, crc %s", ev, wantKey, len(data), testutil.CRC64(data))
	}
	if got := s.object(ev.Key); !bytes.Equal(got, data) {
		t.Fatalf("stored object: %d bytes differ from the clip's %d", len(got), len(data))
	}
	// The consumer gets the same event.
	got := s.event()
	if got.ID != ev.ID || got.Key != ev.Key || got.CRC64 != ev.CRC64 || got.Status != ev.Status {
		t.Fatalf("consumer got %+v, want %+v", got, ev)
	}
	for _, sub := range []string{outboxDir, journalDir, checkpointDir} {
		if es := dirEntries(t, k, sub); len(es) != 0 {
			t.Errorf("%s not empty after the upload: %v", sub, es)
		}
	}
}

func TestUploadSmall(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-small", nil)
	path, data := clipFile(t, "clip-0001.mp4", 10<<10)
	recorded := time.Date(2025, 6, 30, 23, 59, 0, 0, time.FixedZone("X", -3*3600)) // July 1st in UTC
	ev, err := k.Upload(t.Context(), Clip{Path: path, RecordedAt: recorded, Metadata: map[string]string{"camera": "front door"}})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k, ev, "clip-0001.mp4", data, recorded)
	if !strings.Contains(ev.Key, "/2025/07/01/") || ev.ContentType != "video/mp4" || ev.Attempts != 1 || ev.Metadata["camera"] != "front door" {
		t.Errorf("event %+v", ev)
	}
	if st := s.worker.Stats(); st.Requests != 1 || st.OK != 1 {
		t.Errorf("worker stats %+v, want one request", st)
	}
}

func TestUploadMultipart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-multi", func(c *Config) {
		c.PartSize = MinPartSize
		c.MultipartThreshold = 2 * MinPartSize
	})
	var parts []int64
	k.onProgress = func(done, total int64) { parts = append(parts, done) }
	path, data := clipFile(t, "big.bin", 11*MinPartSize+123)
	ev, err := k.Upload(t.Context(), Clip{Path: path, Name: "big-clip.mp4", ContentType: "video/mp4"})
	if err != nil {
		t.Fatal(err)
	}
	fi := mustStat(t, path)
	checkCompleted(t, s, k, ev, "big-clip.mp4", data, fi.ModTime())
	if len(parts) != 12 {
		t.Errorf("%d parts reported, want 12 (multipart upload)", len(parts))
	}
}

func TestUploadAtThresholdIsMultipart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-edge", func(c *Config) {
		c.PartSize = MinPartSize
		c.MultipartThreshold = 3 * MinPartSize
	})
	var parts int
	k.onProgress = func(done, total int64) { parts++ }
	small, _ := clipFile(t, "a.mp4", 3*MinPartSize-1)
	if _, err := k.Upload(t.Context(), Clip{Path: small}); err != nil {
		t.Fatal(err)
	}
	if parts != 0 {
		t.Errorf("a clip below the threshold went in %d parts", parts)
	}
	edge, _ := clipFile(t, "b.mp4", 3*MinPartSize)
	if _, err := k.Upload(t.Context(), Clip{Path: edge}); err != nil {
		t.Fatal(err)
	}
	if parts != 3 {
		t.Errorf("a clip at the threshold went in %d parts, want 3", parts)
	}
	s.event()
	s.event()
}

func TestUploadRejectsBadClipWithoutRequest(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-bad", nil)
	path, _ := clipFile(t, "ok.mp4", 10)
	for _, c := range []Clip{
		{Path: path, Name: "../../etc/passwd"},
		{Path: path, Name: "a/b.mp4"},
		{Path: path, Name: ".."},
		{Path: path, Name: strings.Repeat("n", 201)},
		{Path: path + ".missing"},
	} {
		if ev, err := k.Upload(t.Context(), c); !errors.Is(err, ErrInvalidClip) || ev != nil {
			t.Errorf("%+v: %v, %v", c, ev, err)
		}
	}
	if st := s.worker.Stats(); st.Requests != 0 {
		t.Errorf("bad clips caused %d credentials requests", st.Requests)
	}
	s.noEvent()
}

func TestUploadFailurePublishesFailedEvent(t *testing.T) {
	t.Parallel()
	// The worker hands out a bucket that does not exist: OSS answers NoSuchBucket.
	s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) { c.OSS.Bucket = "no-such-bucket" }})
	k := s.kit("cam-fail", nil)
	path, _ := clipFile(t, "c.mp4", 1000)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err == nil || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Fatalf("Upload: %v, want NoSuchBucket", err)
	}
	if ev == nil || ev.Status != clipgate.StatusFailed || !strings.Contains(ev.Error, "NoSuchBucket") || ev.Bucket != "no-such-bucket" {
		t.Fatalf("failed event %+v", ev)
	}
	got := s.event()
	if got.ID != ev.ID || got.Status != clipgate.StatusFailed || got.Error != ev.Error {
		t.Fatalf("consumer got %+v, want %+v", got, ev)
	}
	if es := dirEntries(t, k, outboxDir); len(es) != 0 {
		t.Errorf("outbox not empty: %v", es)
	}
	// The journal keeps the clip's event ID for a retry.
	if es := dirEntries(t, k, journalDir); len(es) != 1 {
		t.Errorf("journal: %v, want one entry", es)
	}
}

func TestOutboxFlushedOnConnect(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	cfg := s.kitConfig("cam-outbox")
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	queued := &clipgate.UploadEvent{V: 1, ID: "queued-event-1", Device: "cam-outbox", Status: clipgate.StatusCompleted,
		Bucket: testBucket, Key: "clips/cam-outbox/2025/01/01/x.mp4", Size: 1, CRC64: "1", UploadedAt: time.Now().UTC()}
	b, err := protocol.Encode(queued)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(k.outboxPath(queued.ID), b); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(k.outboxPath("garbage"), []byte(`{"v":1,"id":"garbage"`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := k.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.event(); got.ID != queued.ID || got.Key != queued.Key {
		t.Fatalf("flushed %+v, want %+v", got, queued)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		es := dirEntries(t, k, outboxDir)
		if len(es) == 1 && es[0] == "garbage.json.bad" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox after the flush: %v, want only the garbage set aside", es)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.noEvent()
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	// A request sent before the worker is back is lost; a short timeout retries it soon.
	k := s.kit("cam-restart", func(c *Config) { c.RequestTimeout = time.Second })
	c1, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gen := k.gen.Load()
	s.restartBroker()
	// The kit reconnects with a fresh password, subscribes again and gets new credentials
	// over the new connection.
	k.invalidate(c1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := k.Credentials(ctx); err != nil {
		t.Fatal(err)
	}
	if k.gen.Load() == gen {
		t.Error("no new connection was counted")
	}
	// At least one request after the restart; on a busy machine the 1 s timeout may expire
	// and the kit ask again, so not exactly one.
	if st := s.worker.Stats(); st.Requests < 2 || st.OK < 2 {
		t.Errorf("worker stats %+v, want at least 2 requests answered", st)
	}
	path, data := clipFile(t, "after-restart.mp4", 500)
	ev, err := k.Upload(ctx, Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k, ev, "after-restart.mp4", data, mustStat(t, path).ModTime())
}

func TestCancelledMultipartResumes(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-resume", func(c *Config) {
		c.PartSize = MinPartSize
		c.MultipartThreshold = 2 * MinPartSize
	})
	path, data := clipFile(t, "resume.mp4", 10*MinPartSize)
	ctx, cancel := context.WithCancel(t.Context())
	parts := 0
	k.onProgress = func(done, total int64) {
		if parts++; parts == 2 {
			cancel()
		}
	}
	ev, err := k.Upload(ctx, Clip{Path: path})
	if !errors.Is(err, context.Canceled) || ev == nil || ev.Status != clipgate.StatusFailed {
		t.Fatalf("cancelled Upload: %+v, %v", ev, err)
	}
	firstParts := parts
	if firstParts >= 10 {
		t.Fatalf("the cancelled upload went on to %d parts", firstParts)
	}
	journalFiles := dirEntries(t, k, journalDir)
	if len(journalFiles) != 1 || len(dirEntries(t, k, checkpointDir)) != 1 {
		t.Fatalf("journal %v, checkpoints %v: want one of each kept for the resume", journalFiles, dirEntries(t, k, checkpointDir))
	}
	b, err := os.ReadFile(filepath.Join(k.cfg.StateDir, journalDir, journalFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil || j.Attempts != 1 {
		t.Fatalf("journal entry %s: %v", b, err)
	}

	parts = 0
	k.onProgress = func(done, total int64) { parts++ }
	ev, err = k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != j.ID || ev.Attempts != 2 {
		t.Errorf("resumed event %s after %d attempts, want the journal's %s after 2", ev.ID, ev.Attempts, j.ID)
	}
	if parts+firstParts > 10+uploadRoutines || parts >= 10 {
		t.Errorf("resume uploaded %d parts after %d: not resumed from the checkpoint", parts, firstParts)
	}
	checkCompleted(t, s, k, ev, "resume.mp4", data, mustStat(t, path).ModTime())
}

func TestStatusOnlineOffline(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	statuses := make(chan string, 8)
	s.service("consumer", "consumer-secret-1", topics.Default().Status("cam-status"), func(m mqttclient.Message) {
		var st struct{ Device, Status string }
		if err := json.Unmarshal(m.Payload(), &st); err != nil || st.Device != "cam-status" {
			t.Errorf("status message %s: %v", m.Payload(), err)
		}
		statuses <- st.Status
	}) // subscribed before the device connects (service waits for the SUBACK): a
	// subscription made while the retained "online" is being published may receive it twice
	// (live and retained), as MQTT allows.
	next := func() string {
		select {
		case st := <-statuses:
			return st
		case <-time.After(10 * time.Second):
			t.Fatal("no status message")
			return ""
		}
	}
	k := s.kit("cam-status", nil)
	if st := next(); st != "online" {
		t.Fatalf("status %q after Connect, want online", st)
	}
	k.Close()
	if st := next(); st != "offline" {
		t.Fatalf("status %q after Close, want offline", st)
	}
}

func TestConcurrentUploadsOfOneClipRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-twice", func(c *Config) {
		c.PartSize = MinPartSize
		c.MultipartThreshold = 2 * MinPartSize
	})
	path, _ := clipFile(t, "twice.mp4", 4*MinPartSize)
	var second error
	k.onProgress = func(done, total int64) {
		if second == nil {
			_, second = k.Upload(t.Context(), Clip{Path: path})
		}
	}
	if _, err := k.Upload(t.Context(), Clip{Path: path}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(second, ErrInvalidClip) || !strings.Contains(second.Error(), "already being uploaded") {
		t.Fatalf("second Upload during the first: %v", second)
	}
	s.event()
	s.noEvent()
}

// A 0-byte recording is refused with ErrEmptyClip before anything goes out. (Before, it
// was stored as an empty object and announced as completed.)
func TestUploadRefusesEmptyClip(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-empty", nil)
	path, _ := clipFile(t, "empty.mp4", 0)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if !errors.Is(err, ErrEmptyClip) || !errors.Is(err, ErrInvalidClip) || ev != nil || !strings.Contains(err.Error(), "empty file (0 bytes)") {
		t.Fatalf("Upload of an empty file: %+v, %v", ev, err)
	}
	if st := s.worker.Stats(); st.Requests != 0 {
		t.Errorf("an empty clip caused %d credentials requests", st.Requests)
	}
	if keys := s.objects("cam-empty"); len(keys) != 0 {
		t.Errorf("objects stored: %v", keys)
	}
	s.noEvent()
}

// The Content-Type of a clip comes from the kit's fixed table, not from the host's MIME
// database (Debian's maps .ts to text/vnd.trolltech.linguist and .webm to audio/webm).
func TestUploadContentTypeFromTable(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-types", nil)
	for name, want := range map[string]string{
		"a.ts": "video/mp2t", "b.webm": "video/webm", "c.h264": "video/h264", "d.MKV": "video/x-matroska",
		"e.m3u8": "application/vnd.apple.mpegurl", "f.wav": "audio/wav", "g.bin": "application/octet-stream",
	} {
		path, _ := clipFile(t, name, 100)
		ev, err := k.Upload(t.Context(), Clip{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		s.event()
		h, err := s.adminBucket().GetObjectDetailedMeta(ev.Key)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ContentType != want || h.Get("Content-Type") != want {
			t.Errorf("%s: event %q, object %q, want %q", name, ev.ContentType, h.Get("Content-Type"), want)
		}
	}
}
