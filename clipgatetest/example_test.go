package clipgatetest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
)

// A camera uploads one clip and a backend consumer receives its upload event.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	stack, err := clipgatetest.Start(ctx, clipgatetest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stack.Close()

	// The consumer subscribes before the upload, so it cannot miss the event.
	consumer, err := stack.Consumer(ctx, "")
	if err != nil {
		fmt.Println(err)
		return
	}

	kit, err := devicekit.New(stack.DeviceConfig("cam-01"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer kit.Close()
	if err := kit.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}

	clip := filepath.Join(stack.Dir(), "clip-0001.mp4")
	if err := os.WriteFile(clip, bytes.Repeat([]byte("frame "), 1000), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	sent, err := kit.Upload(ctx, devicekit.Clip{
		Path:       clip,
		RecordedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ev, err := consumer.Next(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Status, ev.Key, ev.Size, "bytes")
	fmt.Println("same event as the device sent:", ev.ID == sent.ID)
	// Output:
	// completed clips/cam-01/2024/05/01/clip-0001.mp4 6000 bytes
	// same event as the device sent: true
}
