package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
)

// The demo's HLS camera: ffmpeg, in real time (-re), encodes a test pattern into 1-second
// MPEG-TS segments and its own playlist in a stream directory, as a camera's encoder
// would; the camera's kit streams them (devicekit.Stream), the live playlist sliding,
// then the final one once ffmpeg writes #EXT-X-ENDLIST.
const (
	hlsCamera   = "cam-hls"
	hlsSeconds  = 4
	hlsSegment  = 1
	hlsWindow   = 3
	hlsStreamID = "demo"
)

// hlsResult is what the HLS camera stored: the upload events of its segments and of its
// final playlist (whose objects the demo checks), and the playlist's key.
type hlsResult struct {
	want     map[string]expected
	playlist string
	segments int
}

// isStreamEvent reports whether an upload event belongs to an HLS stream.
func isStreamEvent(ev *protocol.UploadEvent) bool { return ev.Metadata["stream"] != "" }

// runHLSCamera runs the HLS camera, or says why not (no ffmpeg: the demo goes on
// without it). It returns nil when it did not run.
func runHLSCamera(ctx context.Context, s *inproc.Stack, dir string, out *printer, fail func(string, ...any)) *hlsResult {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		out.printf("camera  %-8s skipped: ffmpeg is not installed (apt-get install ffmpeg), so there is no encoder to stream HLS from\n", hlsCamera)
		return nil
	}
	streamDir := filepath.Join(dir, hlsCamera)
	if err := os.Mkdir(streamDir, 0o700); err != nil {
		fail("%s: %v", hlsCamera, err)
		return nil
	}
	kit, err := devicekit.New(s.DeviceConfig(hlsCamera))
	if err != nil {
		fail("%s: %v", hlsCamera, err)
		return nil
	}
	defer kit.Close()
	if err := kit.Connect(ctx); err != nil {
		fail("%s: %v", hlsCamera, err)
		return nil
	}
	res := &hlsResult{want: map[string]expected{}}
	add := func(ev *protocol.UploadEvent) {
		crc, _ := strconv.ParseUint(ev.CRC64, 10, 64)
		res.want[ev.ID] = expected{device: hlsCamera, key: ev.Key, size: ev.Size, crc: crc}
	}
	st, err := kit.NewStream(devicekit.StreamConfig{Dir: streamDir, Name: hlsStreamID, Window: hlsWindow, PollInterval: 50 * time.Millisecond,
		OnEvent: func(e devicekit.StreamEvent) {
			switch e.Kind {
			case devicekit.StreamSegment:
				res.segments++
				add(e.Event)
				out.printf("hls     %-8s segment %d stored as %s (%.2f s)\n", hlsCamera, e.Seq, e.Key, e.Duration.Seconds())
			case devicekit.StreamPlaylist:
				res.playlist = e.Key
				if e.Ended {
					add(e.Event)
					out.printf("hls     %-8s final playlist %s (VOD, #EXT-X-ENDLIST)\n", hlsCamera, e.Key)
				} else {
					out.printf("hls     %-8s live playlist %s rewritten\n", hlsCamera, e.Key)
				}
			case devicekit.StreamRejected, devicekit.StreamWarning, devicekit.StreamRetry:
				out.printf("hls     %-8s %s: %v\n", hlsCamera, e.Kind, e.Err)
			}
		}})
	if err != nil {
		fail("%s: %v", hlsCamera, err)
		return nil
	}
	out.printf("camera  %-8s streams HLS: ffmpeg encodes %d s in real time into %d s segments\n", hlsCamera, hlsSeconds, hlsSegment)
	enc := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=320x180:rate=25:duration=%d", hlsSeconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-f", "hls", "-hls_time", strconv.Itoa(hlsSegment), "-hls_list_size", "0",
		"-hls_segment_filename", filepath.Join(streamDir, "seg%d.ts"), filepath.Join(streamDir, "encoder.m3u8"))
	if b, err := os.CreateTemp(dir, "ffmpeg-*.log"); err == nil {
		enc.Stdout, enc.Stderr = b, b
		defer b.Close()
	}
	if err := enc.Start(); err != nil {
		fail("%s: starting ffmpeg: %v", hlsCamera, err)
		return nil
	}
	runErr := make(chan error, 1)
	go func() { runErr <- st.Run(ctx) }()
	if err := enc.Wait(); err != nil {
		fail("%s: ffmpeg: %v", hlsCamera, err)
		st.Finish() // store what it wrote
	}
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		fail("%s: stream: %v", hlsCamera, err)
	}
	if res.segments == 0 {
		fail("%s: no segment streamed", hlsCamera)
	}
	return res
}
