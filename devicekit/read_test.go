package devicekit

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/iotest"
)

// A device reads back its own clips, with mode r credentials: whole, from a seek, from
// the end, across a connection cut mid-object; Stat tells length and type.
func TestOpenReadsOwnClip(t *testing.T) {
	t.Parallel()
	s, proxy := proxiedStack(t)
	s.consume()
	k := s.kit("cam-reader", func(c *Config) { c.MultipartThreshold, c.PartSize = MinPartSize, MinPartSize })
	path, data := clipFile(t, "clip.mp4", 300<<10+7)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	st, err := k.Stat(t.Context(), ev.Key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(data)) || st.Type != ObjectMultipart || st.CRC64 == 0 || st.Key != ev.Key || st.ContentType != "video/mp4" || st.ETag == "" {
		t.Errorf("Stat = %+v", st)
	}

	r, err := k.Open(t.Context(), ev.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := iotest.TestReader(r, data); err != nil { // reads, seeks and reads again
		t.Fatal(err)
	}
	if pos, err := r.Seek(-100, io.SeekEnd); err != nil || pos != int64(len(data))-100 {
		t.Fatalf("Seek from the end = %d, %v", pos, err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, data[len(data)-100:]) {
		t.Fatalf("tail: %d bytes, %v", len(tail), err)
	}
	if pos, _ := r.Seek(0, io.SeekCurrent); pos != int64(len(data)) {
		t.Errorf("tell after the tail = %d", pos)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to -1 succeeded")
	}
	if _, err := r.Seek(0, 7); err == nil {
		t.Error("Seek with whence 7 succeeded")
	}

	// A GET cut halfway is picked up where it broke.
	cut := &fault{op: "GET", action: cutBody, count: 1}
	proxy.inject(cut)
	if _, err := r.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[1000:]) {
		t.Fatalf("after a cut: %d bytes, %v", len(rest), err)
	}
	if proxy.hits(cut) != 1 {
		t.Fatal("the cut was not injected")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}

	// A recording is Appendable, with its next append position.
	rec, err := k.OpenAppend(t.Context(), AppendClip{Name: "live.ts", BufferSize: MinAppendBuffer})
	if err != nil {
		t.Fatal(err)
	}
	live := randomBytes(t, 70<<10)
	writeAll(t, rec, live)
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err = k.Stat(t.Context(), rec.Key())
	if err != nil {
		t.Fatal(err)
	}
	if st.Type != ObjectAppendable || st.Size != int64(len(live)) || st.NextAppendPosition != st.Size {
		t.Errorf("Stat of a recording = %+v", st)
	}
	lr, err := k.Open(t.Context(), rec.Key())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(lr)
	lr.Close()
	if err != nil || !bytes.Equal(got, live) {
		t.Errorf("recording read back: %d bytes, %v", len(got), err)
	}
	if _, err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	// Mode r credentials: Config.Mode is "w", so reading asked for "r".
	if k.cachedMode("r") == nil {
		t.Error("no mode r credentials cached")
	}
}

// Another device's clip is refused by OSS (the credentials reach the device's own prefix
// only); a missing object of its own is fs.ErrNotExist; garbage keys are refused.
func TestOpenRefusesOtherDevice(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	s.consume()
	owner := s.kit("cam-owner", nil)
	other := s.kit("cam-other", nil)
	path, _ := clipFile(t, "private.mp4", 1000)
	ev, err := owner.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(t.Context(), ev.Key); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Open of another device's clip = %v, want fs.ErrPermission", err)
	}
	if _, err := other.Stat(t.Context(), ev.Key); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Stat of another device's clip = %v, want fs.ErrPermission", err)
	}
	missing := strings.Replace(ev.Key, "private.mp4", "nothing.mp4", 1)
	if _, err := owner.Open(t.Context(), missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing clip = %v, want fs.ErrNotExist", err)
	}
	for _, bad := range []string{"", "/abs", "a\x00b", strings.Repeat("k", 1100)} {
		if _, err := owner.Open(t.Context(), bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Open(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}
