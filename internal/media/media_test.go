package media_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/media"
	"github.com/clipgate/clipgate/internal/media/mediatest"
)

// countingReader is an io.ReaderAt over a file's bytes that counts what was read.
type countingReader struct {
	b     []byte
	mu    sync.Mutex
	read  int64
	calls int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	if off >= int64(len(c.b)) {
		return 0, io.EOF
	}
	n := copy(p, c.b[off:])
	c.mu.Lock()
	c.read += int64(n)
	c.mu.Unlock()
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProbe reads clips ffmpeg made, in every container and layout, and compares the
// duration, picture size and codec with what ffprobe says of the same file.
func TestProbe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		clip      mediatest.Clip
		container string
		codec     string
	}{
		{mediatest.Clip{Name: "end.mp4", Width: 320, Height: 240, Seconds: 3}, media.MP4, media.H264},
		{mediatest.Clip{Name: "start.mp4", Width: 320, Height: 180, Seconds: 2.5, Layout: "faststart", Audio: true}, media.MP4, media.H264},
		{mediatest.Clip{Name: "frag.mp4", Width: 640, Height: 360, Seconds: 4, Layout: "fragmented", FPS: 30}, media.MP4, media.H264},
		{mediatest.Clip{Name: "frag-audio.mp4", Width: 160, Height: 120, Seconds: 3, Layout: "fragmented", Audio: true}, media.MP4, media.H264},
		{mediatest.Clip{Name: "hevc.mp4", Width: 352, Height: 288, Seconds: 2, Codec: "h265"}, media.MP4, media.H265},
		{mediatest.Clip{Name: "camera.mov", Width: 320, Height: 240, Seconds: 2, Audio: true}, media.MOV, media.H264},
		{mediatest.Clip{Name: "stream.ts", Width: 320, Height: 180, Seconds: 3}, media.MPEGTS, media.H264},
		{mediatest.Clip{Name: "audio.ts", Width: 640, Height: 480, Seconds: 2, Audio: true, FPS: 15}, media.MPEGTS, media.H264},
		{mediatest.Clip{Name: "hevc.ts", Width: 320, Height: 240, Seconds: 2, Codec: "h265"}, media.MPEGTS, media.H265},
		// Longer than the head and tail windows together: the tail is read on its own.
		{mediatest.Clip{Name: "long.ts", Width: 320, Height: 240, Seconds: 12, Bitrate: "2M"}, media.MPEGTS, media.H264},
	} {
		t.Run(tc.clip.Name, func(t *testing.T) {
			path := mediatest.Make(t, dir, tc.clip)
			want := mediatest.FFprobe(t, path)
			r := &countingReader{b: readFile(t, path)}
			got, err := media.Probe(r, int64(len(r.b)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Container != tc.container || got.Codec != tc.codec || got.Width != want.Width || got.Height != want.Height ||
				got.Width != tc.clip.Width || got.Height != tc.clip.Height {
				t.Errorf("%+v; ffprobe %+v, want %s %s %dx%d", got, want, tc.container, tc.codec, tc.clip.Width, tc.clip.Height)
			}
			// Within a frame of ffprobe's duration (ffprobe takes the longest stream; audio
			// may run a frame past the video).
			fps := tc.clip.FPS
			if fps == 0 {
				fps = 25
			}
			frame := time.Second / time.Duration(fps)
			wantDur := time.Duration(want.Duration * float64(time.Second))
			if diff := got.Duration - wantDur; math.Abs(float64(diff)) > float64(frame) {
				t.Errorf("duration %v, ffprobe %v", got.Duration, wantDur)
			}
			t.Logf("%s: %+v; read %d of %d bytes in %d calls", tc.clip.Name, got, r.read, len(r.b), r.calls)
		})
	}
}

// TestProbeReadsLittle: a clip's length and size are read from a few kilobytes at its
// start and end, not from its media data.
func TestProbeReadsLittle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []mediatest.Clip{
		{Name: "big.mp4", Width: 640, Height: 360, Seconds: 10, Bitrate: "3M"},
		{Name: "big-start.mp4", Width: 640, Height: 360, Seconds: 10, Bitrate: "3M", Layout: "faststart"},
		{Name: "big.ts", Width: 640, Height: 360, Seconds: 10, Bitrate: "3M"},
	} {
		path := mediatest.Make(t, dir, c)
		r := &countingReader{b: readFile(t, path)}
		info, err := media.Probe(r, int64(len(r.b)))
		if err != nil {
			t.Fatal(err)
		}
		if info.Duration < 9*time.Second || info.Width != 640 {
			t.Fatalf("%s: %+v", c.Name, info)
		}
		limit := int64(len(r.b)) / 2
		if r.read > limit {
			t.Errorf("%s: read %d of %d bytes, want at most %d", c.Name, r.read, len(r.b), limit)
		}
		t.Logf("%s: read %d of %d bytes in %d calls", c.Name, r.read, len(r.b), r.calls)
	}
}

// failingReader fails every read after the first n bytes.
type failingReader struct {
	b   []byte
	n   int64
	err error
}

func (f *failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.n {
		return 0, f.err
	}
	return copy(p, f.b[off:]), nil
}

// TestProbeGarbage: bad files are errors that say so, reader failures come back as they
// are, and nothing panics.
func TestProbeGarbage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mp4 := readFile(t, mediatest.Make(t, dir, mediatest.Clip{Name: "a.mp4", Width: 160, Height: 120, Seconds: 1}))
	ts := readFile(t, mediatest.Make(t, dir, mediatest.Clip{Name: "a.ts", Width: 160, Height: 120, Seconds: 1}))
	jpeg := readFile(t, mediatest.Poster(t, filepath.Join(dir, "a.mp4"), 80))

	probe := func(b []byte) (media.Info, error) {
		return media.Probe(bytes.NewReader(b), int64(len(b)))
	}
	for name, b := range map[string][]byte{
		"empty":    {},
		"text":     []byte("this is not a video at all, just some words in a file"),
		"jpeg":     jpeg,
		"zeros":    make([]byte, 4096),
		"one 0x47": append([]byte{0x47}, make([]byte, 1000)...),
	} {
		if _, err := probe(b); !errors.Is(err, media.ErrUnknownFormat) {
			t.Errorf("%s: %v, want ErrUnknownFormat", name, err)
		}
	}
	// Truncated and corrupted containers: ErrMalformed, or what could be read.
	for name, b := range map[string][]byte{
		"mp4 header only":   mp4[:64],
		"mp4 without moov":  mp4[:len(mp4)/2],
		"mp4 box too large": append(bytes.Clone(mp4[:8]), bytes.Repeat([]byte{0xff}, 100)...),
		"ts one packet":     append(bytes.Clone(ts[:188*3]), 0x47),
		"ts cut mid-packet": ts[:188*5+17],
		"ts garbage":        append(bytes.Clone(ts[:188*3]), bytes.Repeat([]byte{0x12}, 5000)...),
	} {
		info, err := probe(b)
		if err == nil && info.Duration > 0 {
			t.Errorf("%s: %+v from a broken file", name, info)
		} else if err != nil && !errors.Is(err, media.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Every prefix of a real file and every flipped byte of its head: no panic.
	for _, b := range [][]byte{mp4, ts} {
		for n := 0; n < len(b); n += 97 {
			_, _ = probe(b[:n])
		}
		for i := 0; i < min(len(b), 2048); i += 7 {
			c := bytes.Clone(b)
			c[i] ^= 0xa5
			_, _ = probe(c)
		}
	}
	// A reader that fails: its error, not "malformed".
	boom := errors.New("connection reset")
	for name, b := range map[string][]byte{"mp4": mp4, "ts": ts} {
		_, err := media.Probe(&failingReader{b: b, n: 1024, err: boom}, int64(len(b)))
		if !errors.Is(err, boom) || errors.Is(err, media.ErrMalformed) {
			t.Errorf("%s with a failing reader: %v", name, err)
		}
	}
}

// FuzzProbe: no input panics or hangs the probe.
func FuzzProbe(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"))
	f.Add(append([]byte{0x47, 0x40, 0x00, 0x10}, make([]byte, 400)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = media.Probe(bytes.NewReader(b), int64(len(b)))
	})
}
