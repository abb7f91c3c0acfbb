package devicekit

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// proxiedStack is a stack whose token worker hands out a fault proxy as the OSS endpoint.
func proxiedStack(t *testing.T) (*stack, *faultProxy) {
	t.Helper()
	var proxy *faultProxy
	s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) {
		proxy = newFaultProxy(t, c.OSS.Endpoint)
		c.OSS.Endpoint = proxy.URL
	}})
	return s, proxy
}

// adminBucket is the bucket with the full-access key, straight to the local OSS.
func (s *stack) adminBucket() *oss.Bucket {
	s.t.Helper()
	c, err := oss.New(s.cloud.OSSEndpoint(), testAdminAK, s.admin, oss.AuthVersion(oss.AuthV4), oss.Region(s.cloud.Region()))
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := c.Bucket(testBucket)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeAll writes data to r in uneven pieces, with a few explicit flushes.
func writeAll(t *testing.T, r *Recording, data []byte) {
	t.Helper()
	sizes := []int{1, 700, 5000, 13, 9000, 4096, 2}
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		if got, err := r.Write(data[:n]); err != nil || got != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, got, err)
		}
		data = data[n:]
		if i%11 == 10 {
			if err := r.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
		}
	}
}

// checkRecording checks the completed event, the stored object and the consumer's copy.
func checkRecording(t *testing.T, s *stack, k *Kit, ev *clipgate.UploadEvent, name string, data []byte) {
	t.Helper()
	if ev == nil || ev.Status != clipgate.StatusCompleted || ev.Size != int64(len(data)) || ev.CRC64 != testutil.CRC64(data) ||
		ev.Device != k.cfg.DeviceID || ev.Bucket != testBucket || !strings.HasSuffix(ev.Key, "/"+name) || ev.Error != "" {
		t.Fatalf("event %+v; want %d bytes, CRC-64 %s", ev, len(data), testutil.CRC64(data))
	}
	if got := s.object(ev.Key); !bytes.Equal(got, data) {
		t.Fatalf("stored object: %d bytes, differing from the %d written", len(got), len(data))
	}
	h, err := s.adminBucket().GetObjectDetailedMeta(ev.Key)
	if err != nil {
		t.Fatal(err)
	}
	if typ := h.Get("X-Oss-Object-Type"); typ != "Appendable" {
		t.Errorf("object type %q, want Appendable", typ)
	}
	if got := s.event(); got.ID != ev.ID || got.Status != clipgate.StatusCompleted || got.CRC64 != ev.CRC64 {
		t.Fatalf("consumer got %+v, want %+v", got, ev)
	}
	s.noEvent()
	if es := dirEntries(t, k, recordingsDir); len(es) != 0 {
		t.Errorf("recording journal not empty after Close: %v", es)
	}
}

func TestRecordingInManyChunks(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-rec", nil) // Config.Mode "w": the recording asks for "a" itself
	r, err := k.OpenAppend(t.Context(), AppendClip{Name: "live.ts", BufferSize: MinAppendBuffer,
		ContentType: "video/mp2t", Metadata: map[string]string{"camera": "porch"}})
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 150<<10+17)
	writeAll(t, r, data)
	if r.Appended()+int64(r.Buffered()) != int64(len(data)) || r.Buffered() >= MinAppendBuffer {
		t.Fatalf("appended %d + buffered %d, want %d with less than a buffer waiting", r.Appended(), r.Buffered(), len(data))
	}
	ev, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, s, k, ev, "live.ts", data)
	if ev.ContentType != "video/mp2t" || ev.Metadata["camera"] != "porch" || ev.Attempts != 1 {
		t.Errorf("event %+v", ev)
	}
	if n := proxy.count("append"); n < len(data)/MinAppendBuffer {
		t.Errorf("%d appends for %d bytes in %d-byte buffers", n, len(data), MinAppendBuffer)
	}
	if again, err := r.Close(); err != nil || again != ev {
		t.Errorf("second Close: %+v, %v; want the same event", again, err)
	}
	if _, err := r.Write([]byte("late")); !errors.Is(err, ErrRecordingClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if st := s.worker.Stats(); st.Requests != 1 || st.OK != 1 {
		t.Errorf("worker stats %+v, want one request (mode a)", st)
	}
	if k.cache.Load() != nil || k.cachedMode("a") == nil {
		t.Error("the recording's credentials are not cached under mode a")
	}
}

// An append whose response is lost after OSS stored it: the stat shows the object grew by
// exactly the chunk (length and CRC-64), so the kit moves on without sending it again.
func TestRecordingResyncsAfterLostResponse(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-lost", nil)
	lost := &fault{op: "append", action: dropResponse, skip: 2, count: 1}
	proxy.inject(lost)
	r, err := k.OpenAppend(t.Context(), AppendClip{Name: "lost.ts", BufferSize: MinAppendBuffer})
	if err != nil {
		t.Fatal(err)
	}
	heads := proxy.count("head")
	data := randomBytes(t, 10*MinAppendBuffer+100)
	writeAll(t, r, data)
	ev, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, s, k, ev, "lost.ts", data)
	if proxy.hits(lost) != 1 || proxy.count("head") != heads+1 {
		t.Errorf("fault injected %d times, %d stats after it; want 1 and 1", proxy.hits(lost), proxy.count("head")-heads)
	}
	// Ten full buffers and the rest, each sent once: the landed one was not repeated.
	if n := proxy.count("append"); n != 11 {
		t.Errorf("%d appends sent, want 11", n)
	}
}

// An append lost before it reached OSS: the stat shows the old length, and the same bytes
// go again at the same position.
func TestRecordingRetriesAppendThatDidNotLand(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	k := s.kit("cam-retry", nil)
	dropped := &fault{op: "append", action: dropRequest, skip: 1, count: 2}
	proxy.inject(dropped)
	r, err := k.OpenAppend(t.Context(), AppendClip{Name: "retry.ts", BufferSize: MinAppendBuffer})
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 5*MinAppendBuffer)
	writeAll(t, r, data)
	ev, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, s, k, ev, "retry.ts", data)
	if proxy.hits(dropped) != 2 || proxy.count("append") != 5+2 {
		t.Errorf("%d drops, %d appends; want 2 and 7", proxy.hits(dropped), proxy.count("append"))
	}
}

// Someone else appends to the recording's object: the next append meets a 409 naming a
// length that is neither ours nor ours plus the chunk (or is, with other bytes: the CRC-64
// tells), and the recording fails with a clear error and a failed event.
func TestRecordingPositionConflict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		foreign int // bytes someone else appends
	}{
		{"other-length", 1000},
		{"same-length", MinAppendBuffer}, // the length alone would say "landed"
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := proxiedStack(t)
			k := s.kit("cam-conflict", nil)
			r, err := k.OpenAppend(t.Context(), AppendClip{Name: "conflict.ts", BufferSize: MinAppendBuffer})
			if err != nil {
				t.Fatal(err)
			}
			first := randomBytes(t, MinAppendBuffer)
			if _, err := r.Write(first); err != nil {
				t.Fatal(err)
			}
			if r.Appended() != MinAppendBuffer {
				t.Fatalf("appended %d after a full buffer", r.Appended())
			}
			if _, err := s.adminBucket().AppendObject(r.Key(), bytes.NewReader(randomBytes(t, tc.foreign)), MinAppendBuffer); err != nil {
				t.Fatal(err)
			}
			n, err := r.Write(randomBytes(t, MinAppendBuffer))
			if !errors.Is(err, ErrAppendConflict) || n != MinAppendBuffer {
				t.Fatalf("Write after a foreign append: %d, %v; want ErrAppendConflict", n, err)
			}
			if !strings.Contains(err.Error(), r.Key()) || !strings.Contains(err.Error(), "bytes") {
				t.Errorf("error does not say what happened: %v", err)
			}
			got := s.event()
			if got.Status != clipgate.StatusFailed || got.Key != r.Key() || got.Size != MinAppendBuffer || !strings.Contains(got.Error, "does not hold") {
				t.Fatalf("failed event %+v", got)
			}
			if _, werr := r.Write([]byte("x")); !errors.Is(werr, ErrAppendConflict) {
				t.Errorf("Write after the failure: %v", werr)
			}
			ev, cerr := r.Close()
			if !errors.Is(cerr, ErrAppendConflict) || ev == nil || ev.ID != got.ID {
				t.Errorf("Close after the failure: %+v, %v", ev, cerr)
			}
			s.noEvent()
			if es := dirEntries(t, k, recordingsDir); len(es) != 0 {
				t.Errorf("journal of a failed recording kept: %v", es)
			}
		})
	}
}

// Credentials of mode "w" cannot stat the object (HeadObject needs oss:GetObject): a
// recording refuses them with a clear error, which is why recordings ask for mode "a".
func TestRecordingNeedsModeA(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-mode", nil)
	_, err := k.OpenAppend(t.Context(), AppendClip{Name: "w.ts", mode: "w"})
	if err == nil || !strings.Contains(err.Error(), "oss:GetObject") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("OpenAppend with mode w credentials: %v, want AccessDenied on the stat", err)
	}
	// The same kit (Config.Mode "w") records with mode "a" credentials.
	r, err := k.OpenAppend(t.Context(), AppendClip{Name: "a.ts"})
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 3000)
	if _, err := r.Write(data); err != nil {
		t.Fatal(err)
	}
	ev, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, s, k, ev, "a.ts", data)
	if es := dirEntries(t, k, journalDir); len(es) != 0 {
		t.Errorf("upload journal touched: %v", es)
	}
}

// A kit that stops without closing its recording (a crash) loses only its buffer: a new kit
// opening the same recording continues at the object's length under the same event ID.
func TestRecordingContinuesAfterCrash(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k1 := s.kit("cam-crash", nil)
	recorded := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	clip := AppendClip{Name: "crash.ts", RecordedAt: recorded, BufferSize: MinAppendBuffer}
	r1, err := k1.OpenAppend(t.Context(), clip)
	if err != nil {
		t.Fatal(err)
	}
	stored := randomBytes(t, 3*MinAppendBuffer)
	if _, err := r1.Write(stored); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.Write([]byte("lost in the crash")); err != nil {
		t.Fatal(err)
	}
	journal := dirEntries(t, k1, recordingsDir)
	if len(journal) != 1 {
		t.Fatalf("recording journal %v, want one entry", journal)
	}
	k1.Close() // no r1.Close: the recording is left as a crash leaves it
	if _, err := r1.Write([]byte("after the kit closed")); err == nil {
		t.Error("Write after the kit closed succeeded")
	}

	k2 := s.kit("cam-crash", nil) // same StateDir
	r2, err := k2.OpenAppend(t.Context(), clip)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Key() != r1.Key() || r2.Appended() != int64(len(stored)) {
		t.Fatalf("continued recording %s at %d, want %s at %d", r2.Key(), r2.Appended(), r1.Key(), len(stored))
	}
	rest := randomBytes(t, 2*MinAppendBuffer+5)
	if _, err := r2.Write(rest); err != nil {
		t.Fatal(err)
	}
	ev, err := r2.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, s, k2, ev, "crash.ts", append(stored, rest...))
	if ev.Attempts != 2 || !ev.RecordedAt.Equal(recorded) || !strings.Contains(ev.Key, "/2025/03/04/") {
		t.Errorf("event %+v, want the second attempt of the recording of %v", ev, recorded)
	}
	// The closed recording's key is taken: a new recording refuses to replace it.
	if _, err := k2.OpenAppend(t.Context(), clip); !errors.Is(err, ErrAppendConflict) {
		t.Errorf("OpenAppend over a finished recording: %v", err)
	}
}

func TestOpenAppendRejectsBadInput(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-badrec", nil)
	for _, c := range []AppendClip{
		{},
		{Name: "../x.ts"},
		{Name: "a/b.ts"},
		{Name: strings.Repeat("n", MaxClipNameLen+1)},
		{Name: "x.ts", ContentType: "not a type"},
		{Name: "x.ts", Metadata: map[string]string{"": "v"}},
		{Name: "x.ts", BufferSize: MinAppendBuffer - 1},
		{Name: "x.ts", BufferSize: MaxAppendBuffer + 1},
		{Name: "x.ts", BufferSize: -1},
	} {
		if r, err := k.OpenAppend(t.Context(), c); !errors.Is(err, ErrInvalidClip) || r != nil {
			t.Errorf("%+v: %v, %v", c, r, err)
		}
	}
	if st := s.worker.Stats(); st.Requests != 0 {
		t.Errorf("bad clips caused %d credentials requests", st.Requests)
	}

	// An object uploaded normally is not taken over by a recording of the same name.
	path, _ := clipFile(t, "taken.ts", 100)
	now := time.Now()
	if _, err := k.Upload(t.Context(), Clip{Path: path, RecordedAt: now}); err != nil {
		t.Fatal(err)
	}
	s.event()
	if _, err := k.OpenAppend(t.Context(), AppendClip{Name: "taken.ts", RecordedAt: now}); !errors.Is(err, ErrAppendConflict) {
		t.Errorf("OpenAppend over an uploaded clip: %v", err)
	}

	// A corrupt journal entry is replaced; the recording starts afresh.
	r, err := k.OpenAppend(t.Context(), AppendClip{Name: "garbage.ts"})
	if err != nil {
		t.Fatal(err)
	}
	jp := r.j.path
	if _, err := r.Close(); !errors.Is(err, ErrEmptyRecording) {
		t.Fatalf("Close of an empty recording: %v", err)
	}
	if err := os.WriteFile(jp, []byte(`{"id":"../../x","key":`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = k.OpenAppend(t.Context(), AppendClip{Name: "garbage.ts"})
	if err != nil {
		t.Fatal(err)
	}
	if !protocolID(r.j.ID) || r.j.Attempts != 1 {
		t.Errorf("journal after garbage: %+v", r.j)
	}
	// Two recordings of one key at a time are refused.
	if _, err := k.OpenAppend(t.Context(), AppendClip{Name: "garbage.ts"}); !errors.Is(err, ErrInvalidClip) {
		t.Errorf("second OpenAppend of an open recording: %v", err)
	}
	data := []byte("tiny")
	if _, err := r.Write(data); err != nil {
		t.Fatal(err)
	}
	ev, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, s, k, ev, "garbage.ts", data)
	if _, err := os.Stat(filepath.Join(k.cfg.StateDir, recordingsDir)); err != nil {
		t.Error(err)
	}
}

func TestOpenAppendAfterClose(t *testing.T) {
	t.Parallel()
	cfg := Config{BrokerURL: "tcp://127.0.0.1:1", DeviceID: "cam-closed", DeviceKey: zeroKey("cam-closed"), StateDir: t.TempDir()}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.OpenAppend(t.Context(), AppendClip{Name: "x.ts"}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("OpenAppend before Connect: %v", err)
	}
	k.Close()
	if _, err := k.OpenAppend(t.Context(), AppendClip{Name: "x.ts"}); !errors.Is(err, ErrClosed) {
		t.Errorf("OpenAppend after Close: %v", err)
	}
}

// Writes that fit in the buffer only copy: no allocation per Write.
func TestRecordingWriteDoesNotAllocate(t *testing.T) {
	r := &Recording{ctx: t.Context(), buf: make([]byte, 0, MaxAppendBuffer)}
	p := make([]byte, 1000)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := r.Write(p); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Write allocates %v times per call", n)
	}
	if r.Buffered() != 1001*len(p) {
		t.Errorf("buffered %d bytes", r.Buffered())
	}
}

func TestOldRecordingJournalsPruned(t *testing.T) {
	t.Parallel()
	k := cachedKit(t)
	dir := filepath.Join(k.cfg.StateDir, recordingsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, fresh := filepath.Join(dir, "old.json"), filepath.Join(dir, "fresh.json")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-stateMaxAge - time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.recordingJournal("clips/cam-bench/2025/01/01/x.ts"); err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, k, recordingsDir); len(got) != 1 || got[0] != "fresh.json" {
		t.Errorf("recording journals after pruning: %v", got)
	}
}
