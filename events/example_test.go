package events_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/topics"
)

// A backend service consumes verified upload events: a camera uploads a clip, and the
// consumer's handler receives the event once OSS has confirmed the object.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := clipgatetest.Start(ctx, clipgatetest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stack.Close()

	// The consumer's OSS client needs read access to the bucket (HEAD).
	client, err := stack.OSSClient()
	if err != nil {
		fmt.Println(err)
		return
	}
	bucket, err := client.Bucket(stack.Bucket())
	if err != nil {
		fmt.Println(err)
		return
	}
	user, password := stack.ServiceAccount(topics.RoleConsumer)
	got := make(chan *events.Event, 1)
	consumer, err := events.NewConsumer(events.Config{
		BrokerURL: stack.BrokerURL(),
		Username:  user,
		Password:  password,
		ClientID:  "consumer:indexer-1", // stable: the session survives restarts
		Group:     "indexer",
		Topics:    stack.Topics(),
		Bucket:    stack.Bucket(),
		Prefix:    stack.Prefix(),
		OSS:       bucket,
	}, func(ctx context.Context, ev *events.Event) error {
		// Write the index here; returning nil acknowledges the event.
		got <- ev
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer consumer.Close()
	if err := consumer.Start(ctx); err != nil {
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
	if _, err := kit.Upload(ctx, devicekit.Clip{Path: clip, RecordedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}); err != nil {
		fmt.Println(err)
		return
	}

	select {
	case ev := <-got:
		fmt.Println(ev.Device, ev.Key, ev.Size, "bytes, verified:", ev.Verified)
	case <-ctx.Done():
		fmt.Println(ctx.Err())
	}
	// Output:
	// cam-01 clips/cam-01/2024/05/01/clip-0001.mp4 6000 bytes, verified: true
}

// A reconciler finds objects whose upload event never arrived (here: one written
// directly with the admin key) and emits an event for each.
func ExampleReconciler() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := clipgatetest.Start(ctx, clipgatetest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stack.Close()
	client, err := stack.OSSClient()
	if err != nil {
		fmt.Println(err)
		return
	}
	bucket, err := client.Bucket(stack.Bucket())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := bucket.PutObject("clips/cam-07/2024/05/01/lost.mp4", bytes.NewReader([]byte("clip"))); err != nil {
		fmt.Println(err)
		return
	}

	indexed := map[string]bool{} // the caller's index
	r, err := events.NewReconciler(events.ReconcilerConfig{
		Bucket: stack.Bucket(),
		Prefix: stack.Prefix(),
		OSS:    bucket,
		Known:  func(_ context.Context, key string) (bool, error) { return indexed[key], nil },
		Handler: func(_ context.Context, ev *events.Event) error {
			fmt.Println("reconciled:", ev.Device, ev.Key, ev.Size, "bytes, verified:", ev.Verified)
			indexed[ev.Key] = true
			return nil
		},
		MinAge: -1, // the object is brand new; by default younger ones wait for their event
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 2 { // the second pass finds nothing new
		n, err := r.Pass(ctx)
		fmt.Println("pass emitted", n, err)
	}
	// Output:
	// reconciled: cam-07 clips/cam-07/2024/05/01/lost.mp4 4 bytes, verified: true
	// pass emitted 1 <nil>
	// pass emitted 0 <nil>
}
