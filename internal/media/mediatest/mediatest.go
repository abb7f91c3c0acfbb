// Package mediatest makes real video clips for tests with ffmpeg (Debian's package):
// MP4 with the movie box at the end or at the start, fragmented MP4, QuickTime and
// MPEG-TS, H.264 or H.265, and a JPEG poster from a clip's first keyframe.
package mediatest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// E2EEnv set to "1" makes a missing ffmpeg a test failure instead of a skip (CI sets it).
const E2EEnv = "CLIPGATE_E2E"

// Clip describes a clip to make: a test pattern with a frame counter.
type Clip struct {
	// Name is the file name; its extension picks the container (.mp4, .mov, .ts).
	Name string
	// Width, Height and FPS of the picture; Seconds of video.
	Width, Height, FPS int
	Seconds            float64
	// Codec is "h264" (default) or "h265".
	Codec string
	// Layout of an MP4: "" (the movie box at the end, ffmpeg's default), "faststart"
	// (at the start) or "fragmented" (an empty movie box, a fragment per keyframe).
	Layout string
	// Audio adds an AAC track.
	Audio bool
	// GOP is the keyframe interval in frames; default FPS.
	GOP int
	// Bitrate, e.g. "2M", makes a larger file; default ffmpeg's.
	Bitrate string
}

// FFmpeg returns the path of ffmpeg, or skips t (fails it with CLIPGATE_E2E=1).
func FFmpeg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		msg := "ffmpeg is not installed: apt-get install ffmpeg"
		if os.Getenv(E2EEnv) == "1" {
			t.Fatalf("%s (required with %s=1)", msg, E2EEnv)
		}
		t.Skip(msg)
	}
	return p
}

// Make writes the clip into dir and returns its path.
func Make(t testing.TB, dir string, c Clip) string {
	t.Helper()
	out := filepath.Join(dir, c.Name)
	run(t, encodeArgs(t, c), out)
	return out
}

// HLS cuts the clip into MPEG-TS segments of segment seconds with ffmpeg's hls muxer, as
// a camera's encoder does: dir/{stem}{n}.ts (n from 0) and ffmpeg's own playlist
// dir/{stem}.m3u8, which ends with #EXT-X-ENDLIST. c.Name gives the stem; c.GOP should
// divide the segment length (a segment starts at a keyframe). It returns the segments'
// paths, in order, and the playlist's.
func HLS(t testing.TB, dir string, c Clip, segment float64) (segments []string, playlist string) {
	t.Helper()
	stem := strings.TrimSuffix(c.Name, filepath.Ext(c.Name))
	playlist = filepath.Join(dir, stem+".m3u8")
	args := append(encodeArgs(t, c), "-f", "hls", "-hls_time", strconv.FormatFloat(segment, 'f', -1, 64),
		"-hls_list_size", "0", "-hls_segment_filename", filepath.Join(dir, stem+"%d.ts"))
	run(t, args, playlist)
	for i := 0; ; i++ {
		p := filepath.Join(dir, stem+strconv.Itoa(i)+".ts")
		if _, err := os.Stat(p); err != nil {
			break
		}
		segments = append(segments, p)
	}
	if len(segments) == 0 {
		t.Fatalf("ffmpeg wrote no segment into %s", dir)
	}
	return segments, playlist
}

func run(t testing.TB, args []string, out string) {
	t.Helper()
	args = append(args, out)
	if b, err := exec.Command(FFmpeg(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
}

// encodeArgs are ffmpeg's arguments for c, up to the output.
func encodeArgs(t testing.TB, c Clip) []string {
	t.Helper()
	if c.FPS == 0 {
		c.FPS = 25
	}
	if c.GOP == 0 {
		c.GOP = c.FPS
	}
	secs := strconv.FormatFloat(c.Seconds, 'f', -1, 64)
	args := []string{"-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d:duration=%s", c.Width, c.Height, c.FPS, secs)}
	if c.Audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:duration="+secs)
	}
	switch c.Codec {
	case "", "h264":
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	case "h265":
		args = append(args, "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error")
		if filepath.Ext(c.Name) != ".ts" {
			args = append(args, "-tag:v", "hvc1")
		}
	default:
		t.Fatalf("mediatest: codec %q", c.Codec)
	}
	args = append(args, "-g", strconv.Itoa(c.GOP), "-keyint_min", strconv.Itoa(c.GOP), "-sc_threshold", "0")
	if c.Bitrate != "" {
		args = append(args, "-b:v", c.Bitrate, "-maxrate", c.Bitrate, "-bufsize", c.Bitrate)
	}
	if c.Audio {
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	switch c.Layout {
	case "":
	case "faststart":
		args = append(args, "-movflags", "+faststart")
	case "fragmented":
		args = append(args, "-movflags", "frag_keyframe+empty_moov+default_base_moof")
	default:
		t.Fatalf("mediatest: layout %q", c.Layout)
	}
	return args
}

// Poster writes a small JPEG of the clip's first keyframe (what a camera's snapshot
// would be) beside it, as {clip}.poster.jpg, and returns its path.
func Poster(t testing.TB, clip string, width int) string {
	t.Helper()
	out := clip + ".poster.jpg"
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-skip_frame", "nokey", "-i", clip,
		"-frames:v", "1", "-vf", fmt.Sprintf("scale=%d:-2", width), "-q:v", "5", out}
	if b, err := exec.Command(FFmpeg(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
	return out
}

// Probe is what ffprobe says of a clip: the reference the console's reading is checked
// against.
type Probe struct {
	Duration      float64 // seconds, the container's
	Width, Height int
	Codec         string // ffprobe's codec name: h264, hevc
}

// FFprobe runs ffprobe on path.
func FFprobe(t testing.TB, path string) Probe {
	t.Helper()
	FFmpeg(t)
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
		"stream=width,height,codec_name:format=duration", "-of", "default=noprint_wrappers=1", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p Probe
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "width":
			p.Width, _ = strconv.Atoi(v)
		case "height":
			p.Height, _ = strconv.Atoi(v)
		case "codec_name":
			p.Codec = v
		case "duration":
			p.Duration, _ = strconv.ParseFloat(v, 64)
		}
	}
	if p.Width == 0 || p.Duration == 0 {
		t.Fatalf("ffprobe %s: %q", path, out)
	}
	return p
}
