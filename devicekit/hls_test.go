package devicekit

import (
	"bytes"
	"context"
	"errors"
	"hash/crc64"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafov/m3u8"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/media/mediatest"
)

// segments makes n real 1-second MPEG-TS segments (ffmpeg's hls muxer) and returns their
// paths and ffmpeg's own playlist, parsed.
func segments(t *testing.T, n int) ([]string, string, *m3u8.MediaPlaylist) {
	t.Helper()
	dir := t.TempDir()
	segs, list := mediatest.HLS(t, dir, mediatest.Clip{Name: "seg.ts", Width: 160, Height: 90, FPS: 25, Seconds: float64(n)}, 1)
	if len(segs) != n {
		t.Fatalf("ffmpeg cut %d segments, want %d", len(segs), n)
	}
	p, err := parseMediaPlaylist(list)
	if err != nil {
		t.Fatalf("ffmpeg's own playlist: %v", err)
	}
	return segs, list, p
}

// feed puts a file into the stream directory as an encoder would: written under a
// temporary name, then renamed into place.
func feed(t *testing.T, dir, src, name string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// runStream runs a stream in the background; the returned channel gets Run's result.
func runStream(t *testing.T, st *Stream) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(stopped)
		done <- st.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return done
}

// next waits for the stream's next event of kind (others are skipped, but a retry or a
// rejection fails the test unless it is the kind waited for).
func next(t *testing.T, evs <-chan StreamEvent, kind StreamEventKind) StreamEvent {
	t.Helper()
	for {
		select {
		case e := <-evs:
			if e.Kind == kind {
				return e
			}
			if e.Kind == StreamRetry || e.Kind == StreamRejected || e.Kind == StreamWarning {
				t.Fatalf("stream: unexpected %s: %v (%s)", e.Kind, e.Err, e.Path)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no stream %s event", kind)
		}
	}
}

// playlistAt reads the stream's playlist from OSS and resolves its segment URIs to keys.
func (s *stack) playlistAt(key string) (*m3u8.MediaPlaylist, []string) {
	s.t.Helper()
	p, err := decodeMediaPlaylist(s.object(key))
	if err != nil {
		s.t.Fatalf("playlist %s: %v", key, err)
	}
	var keys []string
	for _, seg := range p.Segments {
		if seg != nil {
			keys = append(keys, path.Join(path.Dir(key), seg.URI))
		}
	}
	return p, keys
}

// checkEvent checks an upload event against its object as the consumers verify it: the
// size and the CRC-64 of the object.
func (s *stack) checkEvent(ev *clipgate.UploadEvent) {
	s.t.Helper()
	body := s.object(ev.Key)
	if ev.Status != clipgate.StatusCompleted || int64(len(body)) != ev.Size || strconv.FormatUint(crc64.Checksum(body, crcTable), 10) != ev.CRC64 {
		s.t.Fatalf("event %s for %s (%d bytes, crc %s) does not match the object (%d bytes)", ev.ID, ev.Key, ev.Size, ev.CRC64, len(body))
	}
}

// TestStreamLiveWindowThenVOD feeds real segments one by one into a stream directory
// without an encoder playlist: each segment is stored once the next one exists, the live
// playlist in OSS slides (a window of 3, the media sequence advancing), and Finish stores
// the last segment and the final playlist with every segment and #EXT-X-ENDLIST, whose
// durations, read from the segments' timestamps, are ffmpeg's. The consumer gets an event
// for every segment and for the first and final playlists, each matching its object.
func TestStreamLiveWindowThenVOD(t *testing.T) {
	t.Parallel()
	srcs, _, enc := segments(t, 6)
	s := newStack(t, stackOptions{})
	s.consume()
	k := s.kit("cam-hls", nil)
	dir := t.TempDir()
	evs := make(chan StreamEvent, 256)
	st, err := k.NewStream(StreamConfig{Dir: dir, Name: "front", Window: 3, PollInterval: 20 * time.Millisecond,
		OnEvent: func(e StreamEvent) { evs <- e }})
	if err != nil {
		t.Fatal(err)
	}
	done := runStream(t, st)

	var playlist string
	var stored []string
	for i, src := range srcs {
		feed(t, dir, src, filepath.Base(src))
		if i == 0 {
			continue // the encoder may still be writing it: not stored until the next one
		}
		seg := next(t, evs, StreamSegment)
		if seg.Seq != uint64(i-1) || seg.Path != filepath.Join(dir, filepath.Base(srcs[i-1])) {
			t.Fatalf("segment event %+v, want seq %d of %s", seg, i-1, srcs[i-1])
		}
		stored = append(stored, seg.Key)
		pl := next(t, evs, StreamPlaylist)
		if pl.Ended {
			t.Fatal("a live playlist said ended")
		}
		playlist = pl.Key
		p, keys := s.playlistAt(pl.Key)
		first := max(0, len(stored)-3)
		if p.Closed || p.SeqNo != uint64(first) || !equal(keys, stored[first:]) {
			t.Fatalf("live playlist after %d segments: seq %d, closed %v, segments %q; want seq %d, %q", len(stored), p.SeqNo, p.Closed, keys, first, stored[first:])
		}
		if _, err := os.Stat(seg.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stored segment %s still in the directory (%v)", seg.Path, err)
		}
	}
	if want := "clips/cam-hls/"; !strings.HasPrefix(playlist, want) || path.Base(playlist) != "front.m3u8" {
		t.Fatalf("playlist key %q", playlist)
	}

	st.Finish()
	last := next(t, evs, StreamSegment)
	stored = append(stored, last.Key)
	final := next(t, evs, StreamPlaylist)
	if err := <-done; err != nil || !final.Ended || final.Key != playlist {
		t.Fatalf("Run = %v; final playlist %+v", err, final)
	}
	p, keys := s.playlistAt(playlist)
	if !p.Closed || p.SeqNo != 0 || !equal(keys, stored) || !bytes.Contains(s.object(playlist), []byte("#EXT-X-ENDLIST")) {
		t.Fatalf("final playlist: closed %v, seq %d, segments %q; want %q", p.Closed, p.SeqNo, keys, stored)
	}
	for i, key := range keys {
		want, _ := os.ReadFile(srcs[i])
		if !bytes.Equal(s.object(key), want) {
			t.Errorf("segment %d (%s) differs from the encoder's", i, key)
		}
		// From the timestamps: ffmpeg's own #EXTINF, within a frame.
		if got, want := p.Segments[i].Duration, enc.Segments[i].Duration; math.Abs(got-want) > 0.041 {
			t.Errorf("segment %d lasts %.3fs, ffmpeg says %.3fs", i, got, want)
		}
	}
	if p.TargetDuration < 1 {
		t.Errorf("target duration %v", p.TargetDuration)
	}

	// The consumer's view: every segment, then the first and the final playlist. The
	// first playlist's event names the live playlist as it was (since replaced); the
	// final one's matches the object.
	// (Delivery is at least once: consumers deduplicate by event ID, as here.)
	var segEvents int
	var lists []*clipgate.UploadEvent
	seen := map[string]bool{}
	for segEvents+len(lists) < len(srcs)+2 {
		ev := s.event()
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		switch ev.ContentType {
		case SegmentContentType:
			s.checkEvent(ev)
			segEvents++
		case PlaylistContentType:
			lists = append(lists, ev)
			if ev.Key != playlist || ev.Metadata["stream"] != "front" {
				t.Errorf("playlist event %+v", ev)
			}
		}
	}
	if segEvents != len(srcs) || len(lists) != 2 {
		t.Fatalf("events: %d for segments, %d for the playlist", segEvents, len(lists))
	}
	if lists[1].ID != final.Event.ID || lists[0].ID == lists[1].ID || lists[0].Size >= lists[1].Size {
		t.Errorf("playlist events %+v, %+v; the final one is %s", lists[0], lists[1], final.Event.ID)
	}
	s.checkEvent(lists[1])
	if _, err := os.Stat(st.statePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the ended stream's state is still there: %v", err)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestStreamEncryptedFromEncoderPlaylist: ffmpeg's segments and its own playlist (which
// ends with #EXT-X-ENDLIST) go into the directory at once; the stream takes the
// durations from that playlist, ends by itself, and stores the segments encrypted
// (AES-128, IV the media sequence number) with the key beside the playlist: each decrypts
// to the encoder's bytes.
func TestStreamEncryptedFromEncoderPlaylist(t *testing.T) {
	t.Parallel()
	srcs, list, enc := segments(t, 4)
	s := newStack(t, stackOptions{})
	k := s.kit("cam-aes", nil)
	dir := t.TempDir()
	for _, src := range srcs {
		feed(t, dir, src, filepath.Base(src))
	}
	feed(t, dir, list, "seg.m3u8")
	evs := make(chan StreamEvent, 256)
	st, err := k.NewStream(StreamConfig{Dir: dir, Name: "yard", Encrypt: true, PollInterval: 20 * time.Millisecond,
		OnEvent: func(e StreamEvent) { evs <- e }})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	var final StreamEvent
	for len(evs) > 0 {
		if e := <-evs; e.Kind == StreamPlaylist && e.Ended {
			final = e
		} else if e.Kind != StreamSegment && e.Kind != StreamPlaylist {
			t.Fatalf("unexpected %s: %v", e.Kind, e.Err)
		}
	}
	if final.Key == "" {
		t.Fatal("no final playlist")
	}
	p, keys := s.playlistAt(final.Key)
	if p.Key == nil || p.Key.Method != "AES-128" || p.Key.IV != "" || p.Key.URI != "yard.key" || !p.Closed || len(keys) != len(srcs) {
		t.Fatalf("final playlist %q", s.object(final.Key))
	}
	aesKey := s.object(path.Join(path.Dir(final.Key), p.Key.URI))
	if len(aesKey) != 16 {
		t.Fatalf("the key object holds %d bytes", len(aesKey))
	}
	for i, key := range keys {
		seq := p.SeqNo + uint64(i)
		sealed := s.object(key)
		plain, err := DecryptSegment(sealed, aesKey, SegmentIV(seq))
		want, _ := os.ReadFile(srcs[i])
		if err != nil || !bytes.Equal(plain, want) {
			t.Fatalf("segment %d decrypts to %d bytes (%v), want the encoder's %d", i, len(plain), err, len(want))
		}
		if bytes.Equal(sealed[:188], want[:188]) {
			t.Fatalf("segment %d stored in the clear", i)
		}
		if p.Segments[i].Duration != enc.Segments[i].Duration {
			t.Errorf("segment %d: %v s, the encoder's playlist says %v s", i, p.Segments[i].Duration, enc.Segments[i].Duration)
		}
	}
	// Each segment has its own IV: the next segment's does not give the bytes back.
	want, _ := os.ReadFile(srcs[0])
	if plain, err := DecryptSegment(s.object(keys[0]), aesKey, SegmentIV(p.SeqNo+1)); err == nil && bytes.Equal(plain, want) {
		t.Error("a segment decrypted with the next segment's IV")
	}
}

// TestStreamGarbage: a segment file that is no MPEG-TS is rejected with a clear error
// and a "failed" event, left in the directory and out of the playlist; an encoder
// playlist that is no playlist is reported, and the durations come from the segments.
func TestStreamGarbage(t *testing.T) {
	t.Parallel()
	srcs, _, _ := segments(t, 3)
	s := newStack(t, stackOptions{})
	s.consume()
	k := s.kit("cam-junk", nil)
	dir := t.TempDir()
	feed(t, dir, srcs[0], "seg0.ts")
	junk, _ := clipFile(t, "junk.ts", 5000)
	feed(t, dir, junk, "seg1.ts")
	feed(t, dir, srcs[1], "seg2.ts")
	if err := os.WriteFile(filepath.Join(dir, "seg.m3u8"), []byte("hello, not a playlist\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := make(chan StreamEvent, 256)
	st, err := k.NewStream(StreamConfig{Dir: dir, PollInterval: 20 * time.Millisecond, OnEvent: func(e StreamEvent) { evs <- e }})
	if err != nil {
		t.Fatal(err)
	}
	st.Finish()
	if err := st.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	var rejected, warned []StreamEvent
	var final StreamEvent
	for len(evs) > 0 {
		switch e := <-evs; e.Kind {
		case StreamRejected:
			rejected = append(rejected, e)
		case StreamWarning:
			warned = append(warned, e)
		case StreamPlaylist:
			final = e
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0].Err.Error(), "not an m3u8 playlist") {
		t.Errorf("warnings %+v", warned)
	}
	if len(rejected) != 1 || rejected[0].Path != filepath.Join(dir, "seg1.ts") || !strings.Contains(rejected[0].Err.Error(), "not an MPEG-TS segment") {
		t.Fatalf("rejections %+v", rejected)
	}
	if ev := rejected[0].Event; ev == nil || ev.Status != clipgate.StatusFailed || !strings.Contains(ev.Error, "rejected: not an MPEG-TS segment") {
		t.Errorf("rejection event %+v", rejected[0].Event)
	}
	if _, err := os.Stat(filepath.Join(dir, "seg1.ts")); err != nil {
		t.Errorf("the rejected file is gone: %v", err)
	}
	p, keys := s.playlistAt(final.Key)
	if !final.Ended || len(keys) != 2 || !strings.HasSuffix(keys[0], "-seg0.ts") || !strings.HasSuffix(keys[1], "-seg2.ts") || p.SeqNo != 0 {
		t.Fatalf("final playlist %q", s.object(final.Key))
	}
	for i := range 2 {
		if d := p.Segments[i].Duration; math.Abs(d-1) > 0.041 {
			t.Errorf("segment %d lasts %v s, want 1 s from its timestamps", i, d)
		}
	}
	// The default name: the directory's and the start's time of day.
	if base := path.Base(final.Key); !strings.HasPrefix(base, filepath.Base(dir)+"-") || !strings.HasSuffix(base, ".m3u8") {
		t.Errorf("default playlist name %q", base)
	}
}

// TestStreamResumes: a stream stopped after two segments (its Run cancelled) is continued
// by a new Stream on the same directory: the same playlist, the media sequence going on.
func TestStreamResumes(t *testing.T) {
	t.Parallel()
	srcs, _, _ := segments(t, 4)
	s := newStack(t, stackOptions{})
	k := s.kit("cam-resume", nil)
	dir := t.TempDir()
	evs := make(chan StreamEvent, 256)
	cfg := StreamConfig{Dir: dir, Name: "porch", Window: 2, PollInterval: 20 * time.Millisecond, OnEvent: func(e StreamEvent) { evs <- e }}
	st, err := k.NewStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range srcs[:3] {
		feed(t, dir, src, filepath.Base(src))
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	next(t, evs, StreamSegment)
	next(t, evs, StreamSegment)
	first := next(t, evs, StreamPlaylist)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel = %v", err)
	}
	feed(t, dir, srcs[3], filepath.Base(srcs[3]))
	st2, err := k.NewStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st2.Finish()
	if err := st2.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, keys := s.playlistAt(first.Key)
	if !p.Closed || len(keys) != 4 || p.SeqNo != 0 {
		t.Fatalf("resumed stream's final playlist %q", s.object(first.Key))
	}
	for i, key := range keys {
		want, _ := os.ReadFile(srcs[i])
		if !bytes.Equal(s.object(key), want) {
			t.Errorf("segment %d differs", i)
		}
	}
}

// TestDecodeMediaPlaylistGarbage: what is not a media playlist gets a clear error.
func TestDecodeMediaPlaylistGarbage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "no #EXTM3U"},
		{"\x00\x01binary", "no #EXTM3U"},
		{"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow.m3u8\n", "master playlist"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\na.ts\n", "without a positive duration"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n", "malformed"},
		{"#EXTM3U\n" + strings.Repeat("#", maxPlaylistSize), "at most"},
	} {
		_, err := decodeMediaPlaylist([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decodeMediaPlaylist(%.40q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
	p, err := decodeMediaPlaylist([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.5,\na.ts\n#EXT-X-ENDLIST\n"))
	if err != nil || p.SeqNo != 7 || !p.Closed || p.Segments[0].URI != "a.ts" {
		t.Errorf("a good playlist: %+v, %v", p, err)
	}
}

// TestStreamConfigErrors: NewStream refuses what cannot work.
func TestStreamConfigErrors(t *testing.T) {
	t.Parallel()
	k, err := New(Config{BrokerURL: "tcp://127.0.0.1:1", DeviceID: "cam-cfg", DeviceKey: zeroKey("cam-cfg"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("x"), 0o600)
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  StreamConfig
		want string
	}{
		{StreamConfig{}, "Dir is required"},
		{StreamConfig{Dir: filepath.Join(dir, "missing")}, "no such file"},
		{StreamConfig{Dir: file}, "not a directory"},
		{StreamConfig{Dir: dir, Window: -1}, "Window"},
		{StreamConfig{Dir: dir, PollInterval: time.Microsecond}, "PollInterval"},
		{StreamConfig{Dir: dir, Name: "a/b"}, "Name"},
		{StreamConfig{Dir: dir, Key: make([]byte, 16)}, "need Encrypt"},
		{StreamConfig{Dir: dir, Encrypt: true, Key: make([]byte, 15)}, "16"},
		{StreamConfig{Dir: dir, Encrypt: true, KeyURI: "a\"b"}, "quotes"},
	} {
		_, err := k.NewStream(tc.cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStream(%+v) = %v, want ErrConfig with %q", tc.cfg, err, tc.want)
		}
	}
}

// TestRelativeURI: segment URIs relative to the playlist, across days too.
func TestRelativeURI(t *testing.T) {
	for _, tc := range []struct{ from, key, want string }{
		{"p/cam/2026/12/02/a.m3u8", "p/cam/2026/12/02/a-s0.ts", "a-s0.ts"},
		{"p/cam/2026/12/02/a.m3u8", "p/cam/2026/12/03/a-s9.ts", "../03/a-s9.ts"},
		{"p/cam/2026/12/31/a.m3u8", "p/cam/2027/01/01/a-s9.ts", "../../../2027/01/01/a-s9.ts"},
	} {
		if got := relativeURI(tc.from, tc.key); got != tc.want || path.Join(path.Dir(tc.from), got) != tc.key {
			t.Errorf("relativeURI(%q, %q) = %q, want %q", tc.from, tc.key, got, tc.want)
		}
	}
	if naturalCompare("seg9.ts", "seg10.ts") >= 0 || naturalCompare("seg10.ts", "seg9.ts") <= 0 || naturalCompare("a", "a") != 0 {
		t.Error("natural order")
	}
}
