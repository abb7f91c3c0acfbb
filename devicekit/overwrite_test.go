package devicekit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate"
)

// Point 2 of issue 9 (a recording silently overwritten) and point 7 (device state after
// crashes), against the local cloud.

// openUploads lists the multipart uploads in progress in the test bucket (admin key).
func (s *stack) openUploads() []oss.UncompletedUpload {
	s.t.Helper()
	res, err := s.adminBucket().ListMultipartUploads(oss.Prefix(testPrefix))
	if err != nil {
		s.t.Fatalf("ListMultipartUploads: %v", err)
	}
	return res.Uploads
}

// objects lists the keys under the device's prefix (admin key).
func (s *stack) objects(device string) []string {
	s.t.Helper()
	res, err := s.adminBucket().ListObjects(oss.Prefix(testPrefix + device + "/"))
	if err != nil {
		s.t.Fatalf("ListObjects: %v", err)
	}
	var keys []string
	for _, o := range res.Objects {
		keys = append(keys, o.Key)
	}
	return keys
}

// sameDayClip writes n random bytes to a file of the given name in a new directory, with
// a fixed modification time: clips of one name and day.
func sameDayClip(t *testing.T, name string, n int) (string, []byte) {
	t.Helper()
	path, data := clipFile(t, name, n)
	at := time.Date(2025, 5, 4, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func smallParts(c *Config) {
	c.PartSize = MinPartSize
	c.MultipartThreshold = 2 * MinPartSize
}

// Two different recordings of one name and day never share a key: the second goes under
// its alternate name, the first is intact, and each event names its own object. (Before,
// the second replaced the first.) Unicode names stay as they are.
func TestUploadNeverOverwritesAnotherRecording(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int
	}{{"front-door.mp4", 20 << 10}, {"门口 camera #1.mp4", 20 << 10}, {"multipart 门.mp4", 5*MinPartSize + 3}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, proxy := proxiedStack(t)
			k := s.kit("cam-twice", smallParts)
			first, data1 := sameDayClip(t, tc.name, tc.size)
			second, data2 := sameDayClip(t, tc.name, tc.size/2+MinPartSize)
			ev1, err := k.Upload(t.Context(), Clip{Path: first})
			if err != nil {
				t.Fatal(err)
			}
			ev2, err := k.Upload(t.Context(), Clip{Path: second})
			if err != nil {
				t.Fatal(err)
			}
			day := testPrefix + "cam-twice/2025/05/04/"
			stem := strings.TrimSuffix(tc.name, ".mp4")
			alt := day + stem + fmt.Sprintf("~%016x", crc64Of(data2)) + ".mp4"
			if ev1.Key != day+tc.name || ev2.Key != alt {
				t.Fatalf("keys %q and %q, want %q and %q", ev1.Key, ev2.Key, day+tc.name, alt)
			}
			if !bytes.Equal(s.object(ev1.Key), data1) || !bytes.Equal(s.object(ev2.Key), data2) {
				t.Fatal("an object does not hold its recording")
			}
			for _, ev := range []*clipgate.UploadEvent{ev1, ev2} {
				if got := s.event(); got.ID != ev.ID || got.Key != ev.Key {
					t.Errorf("consumer got %+v, want %+v", got, ev)
				}
			}
			if n := len(s.objects("cam-twice")); n != 2 {
				t.Errorf("%d objects, want 2", n)
			}
			if ups := s.openUploads(); len(ups) != 0 {
				t.Errorf("multipart uploads left: %+v", ups)
			}
			// A multipart clip finds its own key taken before it sends a part (the
			// InitiateMultipartUpload carries x-oss-forbid-overwrite): its parts all go to
			// the alternate key.
			if tc.size > 2*MinPartSize {
				own, other := 0, 0
				for _, path := range proxy.pathsOf("part") {
					switch {
					case strings.HasSuffix(path, day+tc.name):
						own++
					case strings.HasSuffix(path, alt):
						other++
					}
				}
				nparts := func(b []byte) int { return (len(b) + MinPartSize - 1) / MinPartSize }
				if own != nparts(data1) || other != nparts(data2) || proxy.forbidden("initiate") != proxy.count("initiate") {
					t.Errorf("%d parts to the own key, %d to the alternate, want %d and %d; initiates %d (forbid %d)",
						own, other, nparts(data1), nparts(data2), proxy.count("initiate"), proxy.forbidden("initiate"))
				}
			}
			// Uploading the second recording again finds it stored: same key, nothing new.
			ev3, err := k.Upload(t.Context(), Clip{Path: second})
			if err != nil || ev3.Key != ev2.Key {
				t.Fatalf("upload again: %+v, %v", ev3, err)
			}
			s.event()
			if n := len(s.objects("cam-twice")); n != 2 {
				t.Errorf("%d objects after uploading one again, want 2", n)
			}
		})
	}
}

func crc64Of(b []byte) uint64 { return crc64.Checksum(b, crcTable) }

// Every PutObject, InitiateMultipartUpload and CompleteMultipartUpload of a clip carries
// x-oss-forbid-overwrite.
func TestUploadSendsForbidOverwrite(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-forbid", smallParts)
	small, _ := clipFile(t, "small.mp4", 1000)
	big, _ := clipFile(t, "big.mp4", 3*MinPartSize)
	for _, p := range []string{small, big} {
		if _, err := k.Upload(t.Context(), Clip{Path: p}); err != nil {
			t.Fatal(err)
		}
		s.event()
	}
	for _, op := range []string{"put", "initiate", "complete"} {
		if proxy.count(op) != 1 || proxy.forbidden(op) != 1 {
			t.Errorf("%s: %d requests, %d with x-oss-forbid-overwrite: want one, with it", op, proxy.count(op), proxy.forbidden(op))
		}
	}
}

// The answer of a PutObject is lost: the retry gets 409 FileAlreadyExists, finds the same
// size and CRC-64 under the key, and succeeds with the same key and event ID.
func TestRetriedPutFindsItsOwnObject(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-lost", nil)
	f := &fault{op: "put", action: dropResponse, count: 1}
	proxy.inject(f)
	path, data := clipFile(t, "lost.mp4", 5000)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k, ev, "lost.mp4", data, mustStat(t, path).ModTime())
	if ev.Attempts != 2 || proxy.count("put") != 2 || proxy.count("head") != 1 {
		t.Errorf("%d attempts, %d puts, %d heads: want 2, 2 and 1", ev.Attempts, proxy.count("put"), proxy.count("head"))
	}
}

// A retry after the clip's own key was found taken goes straight to the alternate key
// the journal recorded, under the same event ID.
func TestCollisionRetryKeepsAlternateKey(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-alt", nil)
	first, _ := sameDayClip(t, "same.mp4", 2000)
	if _, err := k.Upload(t.Context(), Clip{Path: first}); err != nil {
		t.Fatal(err)
	}
	s.event()
	second, data := sameDayClip(t, "same.mp4", 3000)
	// Every PutObject to the alternate key is lost on the way: the upload fails.
	lost := &fault{op: "put", action: dropRequest, skip: 1, count: ossBackoff.Attempts}
	proxy.inject(lost)
	ev, err := k.Upload(t.Context(), Clip{Path: second})
	if err == nil || ev.Status != clipgate.StatusFailed {
		t.Fatalf("upload with every request lost: %+v, %v", ev, err)
	}
	s.event() // the failed event
	alt := testPrefix + "cam-alt/2025/05/04/" + alternateName("same.mp4", crc64Of(data))
	var j journal
	entries := dirEntries(t, k, journalDir)
	if len(entries) != 1 {
		t.Fatalf("journal %v", entries)
	}
	b, _ := os.ReadFile(filepath.Join(k.cfg.StateDir, journalDir, entries[0]))
	if err := json.Unmarshal(b, &j); err != nil || j.Object != alt {
		t.Fatalf("journal %s: want the alternate key %s", b, alt)
	}
	before := len(proxy.pathsOf("put"))
	ev, err = k.Upload(t.Context(), Clip{Path: second})
	if err != nil || ev.Key != alt || ev.ID != j.ID {
		t.Fatalf("retry: %+v, %v; want key %s, event %s", ev, err, alt, j.ID)
	}
	if puts := proxy.pathsOf("put")[before:]; len(puts) != 1 || !strings.HasSuffix(puts[0], alt) {
		t.Errorf("retry sent PutObject to %q, want only the alternate key", puts)
	}
	if !bytes.Equal(s.object(alt), data) {
		t.Error("the alternate object does not hold the clip")
	}
	s.event()
}

// Another recording takes the key while a multipart upload runs: CompleteMultipartUpload
// answers 409, the kit aborts that upload and uploads the clip to its alternate key.
// Neither clip is lost and no upload is left.
func TestMultipartCollisionMidwayAbortsAndMoves(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-race", smallParts)
	path, data := sameDayClip(t, "race.mp4", 4*MinPartSize)
	key := testPrefix + "cam-race/2025/05/04/race.mp4"
	other := []byte("another recording, stored meanwhile")
	var once sync.Once
	k.onProgress = func(done, total int64) {
		once.Do(func() {
			if err := s.adminBucket().PutObject(key, bytes.NewReader(other)); err != nil {
				t.Error(err)
			}
		})
	}
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	alt := testPrefix + "cam-race/2025/05/04/" + alternateName("race.mp4", crc64Of(data))
	if ev.Key != alt || !bytes.Equal(s.object(alt), data) || !bytes.Equal(s.object(key), other) {
		t.Fatalf("event key %s, want %s; or an object was lost", ev.Key, alt)
	}
	if ups := s.openUploads(); len(ups) != 0 {
		t.Errorf("multipart uploads left: %+v", ups)
	}
	s.event()
}

// A device killed between CompleteMultipartUpload and the removal of its checkpoint
// restarts with the checkpoint and the journal: the next Upload finds the clip stored
// (HeadObject: same size and CRC-64) and sends no part again, under the same event ID.
// (Before, the retried Complete got NoSuchUpload and the whole clip went again.)
func TestKilledAfterCompleteSendsNothingAgain(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-killed", smallParts)
	path, data := clipFile(t, "killed.mp4", 12*MinPartSize)
	saved := map[string][]byte{}
	k.afterComplete = func(cpPath string) {
		// What a kill at this instant leaves on disk: the checkpoint and the journal.
		for _, dir := range []string{checkpointDir, journalDir} {
			for _, name := range dirEntries(t, k, dir) {
				p := filepath.Join(k.cfg.StateDir, dir, name)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Error(err)
				}
				saved[p] = b
			}
		}
	}
	ev1, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	s.event()
	if len(saved) != 2 {
		t.Fatalf("saved %d state files, want the checkpoint and the journal entry", len(saved))
	}
	k.Close()
	for p, b := range saved {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	k2 := s.kit("cam-killed", smallParts)
	parts, complete := proxy.count("part"), proxy.count("complete")
	var partsSent atomic.Int32
	k2.onProgress = func(done, total int64) { partsSent.Add(1) }
	ev2, err := k2.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k2, ev2, "killed.mp4", data, mustStat(t, path).ModTime())
	if ev2.ID != ev1.ID || ev2.Key != ev1.Key {
		t.Errorf("event %s at %s after the restart, want %s at %s", ev2.ID, ev2.Key, ev1.ID, ev1.Key)
	}
	if n := proxy.count("part") - parts; n != 0 || partsSent.Load() != 0 || proxy.count("complete") != complete {
		t.Errorf("%d parts and %d completes sent again after the restart, want none", n, proxy.count("complete")-complete)
	}
	if ups := s.openUploads(); len(ups) != 0 {
		t.Errorf("multipart uploads left: %+v", ups)
	}
}

// startAbandoned starts a multipart upload of a new clip and stops it after two parts,
// leaving the journal entry, the checkpoint and the upload in OSS. It returns the clip's
// path.
func startAbandoned(t *testing.T, s *stack, k *Kit, name string) string {
	t.Helper()
	path, _ := clipFile(t, name, 8*MinPartSize)
	ctx, cancel := context.WithCancel(t.Context())
	var n atomic.Int32
	k.onProgress = func(done, total int64) {
		if n.Add(1) == 2 {
			cancel()
		}
	}
	if _, err := k.Upload(ctx, Clip{Path: path}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload: %v", err)
	}
	k.onProgress = nil
	if len(dirEntries(t, k, checkpointDir)) == 0 {
		t.Fatal("no checkpoint left")
	}
	return path
}

// The uploads whose file was deleted or rewritten, or that nothing touched for
// stateMaxAge, are aborted by the sweep, with their state; a live one is kept.
func TestSweepAbortsAbandonedUploads(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-sweep", smallParts)
	sweeps := make(chan int, 4)
	k.onSweep = func(n int, err error) {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		sweeps <- n
	}
	deleted := startAbandoned(t, s, k, "deleted.mp4")
	<-sweeps // the first Upload's sweep (nothing to do yet)
	rewritten := startAbandoned(t, s, k, "rewritten.mp4")
	startAbandoned(t, s, k, "stale.mp4")
	live := startAbandoned(t, s, k, "live.mp4")
	if n := len(s.openUploads()); n != 4 {
		t.Fatalf("%d uploads in progress, want 4", n)
	}
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rewritten, []byte("another recording"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-stateMaxAge - time.Hour)
	for _, name := range dirEntries(t, k, journalDir) {
		p := filepath.Join(k.cfg.StateDir, journalDir, name)
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "stale.mp4") {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An orphan checkpoint (no journal entry) of an upload, untouched for as long.
	startAbandoned(t, s, k, "orphan.mp4")
	for _, name := range dirEntries(t, k, journalDir) {
		p := filepath.Join(k.cfg.StateDir, journalDir, name)
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "orphan.mp4") {
			var j journal
			json.Unmarshal(b, &j)
			os.Remove(p)
			cp := filepath.Join(k.cfg.StateDir, checkpointDir, j.ID+".cp")
			if err := os.Chtimes(cp, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	k.sweepSoon(true)
	if n := <-sweeps; n != 4 {
		t.Errorf("the sweep aborted %d uploads, want 4", n)
	}
	ups := s.openUploads()
	if len(ups) != 1 || !strings.HasSuffix(ups[0].Key, "/live.mp4") {
		t.Errorf("uploads left: %+v, want only live.mp4's", ups)
	}
	if js, cps := dirEntries(t, k, journalDir), dirEntries(t, k, checkpointDir); len(js) != 1 || len(cps) != 1 {
		t.Errorf("journal %v, checkpoints %v: want live.mp4's only", js, cps)
	}
	// The live one resumes and completes.
	ev, err := k.Upload(t.Context(), Clip{Path: live})
	if err != nil || ev.Status != clipgate.StatusCompleted {
		t.Fatalf("live upload: %+v, %v", ev, err)
	}
	if ups := s.openUploads(); len(ups) != 0 {
		t.Errorf("uploads left: %+v", ups)
	}
}

// A file deleted during its multipart upload fails it at once (a local error is not
// retried), and the upload is aborted.
func TestFileDeletedMidUploadAborts(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-vanish", smallParts)
	path, _ := clipFile(t, "vanish.mp4", 10*MinPartSize)
	var once sync.Once
	k.onProgress = func(done, total int64) { once.Do(func() { os.Remove(path) }) }
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err == nil || !strings.Contains(err.Error(), "disappeared") || ev.Status != clipgate.StatusFailed || ev.Attempts != 1 {
		t.Fatalf("upload of a deleted file: %+v, %v", ev, err)
	}
	if ups := s.openUploads(); len(ups) != 0 {
		t.Errorf("uploads left: %+v", ups)
	}
	if cps := dirEntries(t, k, checkpointDir); len(cps) != 0 {
		t.Errorf("checkpoints left: %v", cps)
	}
	s.event()
}
