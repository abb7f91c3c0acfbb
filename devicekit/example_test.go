package devicekit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
)

// A camera asks for credentials and uploads a clip in parts, against the whole stack
// (local OSS and STS, broker, token worker) running in this process.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := clipgatetest.Start(ctx, clipgatetest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stack.Close()

	cfg := stack.DeviceConfig("cam-0001") // broker URL, device key, state directory
	cfg.PartSize = devicekit.MinPartSize  // small parts, to show a multipart upload
	cfg.MultipartThreshold = 2 * devicekit.MinPartSize
	kit, err := devicekit.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer kit.Close()
	if err := kit.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}

	creds, err := kit.Credentials(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("may write to", creds.OSS.Bucket+"/"+creds.OSS.Prefix)

	path := filepath.Join(stack.Dir(), "clip-0001.mp4")
	if err := os.WriteFile(path, make([]byte, 3*devicekit.MinPartSize), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{
		Path:       path,
		RecordedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Metadata:   map[string]string{"trigger": "motion"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Status, ev.Key, ev.Size, ev.ContentType, "crc64", ev.CRC64)
	// Output:
	// may write to clips/clips/cam-0001/
	// completed clips/cam-0001/2025/01/02/clip-0001.mp4 307200 video/mp4 crc64 12661903000188422335
}

// A camera streams HLS: its encoder (here ffmpeg, reading the camera's RTSP feed without
// transcoding) cuts 2-second MPEG-TS segments into a directory, and the kit uploads them
// and keeps the playlist in OSS, live, then final once ffmpeg ends its own playlist.
//
//	ffmpeg -i rtsp://127.0.0.1/main -c copy -f hls -hls_time 2 -hls_list_size 0 \
//	       -hls_segment_filename /var/spool/cam/front/seg%d.ts /var/spool/cam/front/index.m3u8
func ExampleKit_NewStream() {
	ctx := context.Background()
	var kit *devicekit.Kit // connected: see New and Kit.Connect
	stream, err := kit.NewStream(devicekit.StreamConfig{
		Dir:     "/var/spool/cam/front",
		Name:    "front-" + time.Now().UTC().Format("150405"),
		Window:  6,    // segments in the live playlist
		Encrypt: true, // AES-128; the console serves the key to operators
		OnEvent: func(e devicekit.StreamEvent) {
			if e.Kind == devicekit.StreamPlaylist && e.Ended {
				fmt.Println("finished:", e.Key)
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := stream.Run(ctx); err != nil { // until ffmpeg writes #EXT-X-ENDLIST
		fmt.Println(err)
	}
}
