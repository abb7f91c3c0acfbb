package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
)

// TestFullPath: a device uploads through the 3-node cluster and the console indexes the
// clip from the JetStream durable consumer on $MQTT_msgs.
func TestFullPath(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 2})
	c, db := startConsole(t, ctx, s)
	kit := newKit(t, ctx, s, "cam-full")
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: writeClip(t, t.TempDir(), "a.mp4", 4<<10), RecordedAt: recorded})
	if err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, ctx, db, []string{ev.Key})
	clip, err := db.Clip(ctx, ev.Key)
	if err != nil || clip.Device != "cam-full" || clip.Size != 4<<10 {
		t.Fatalf("indexed %+v, %v", clip, err)
	}
	waitHandled(t, ctx, c, 1) // counted after the commit the index showed
	if st := c.Stats(); st.Consumer.Handled != 1 || st.Consumer.Verified != 1 {
		t.Fatalf("consumer stats %+v", st.Consumer)
	}
}

// TestFailoverWhileUploading: 20 devices upload continuously while the cluster loses, one
// after the other, the $MQTT_msgs stream leader, the JetStream meta leader and then a
// node with devices on it (each comes back before the next). Every upload the kit reported
// done is indexed, exactly once, and the devices carry on after each loss.
func TestFailoverWhileUploading(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 2})
	c, db := startConsole(t, ctx, s)
	cl := s.Cluster()

	const devices = 20
	f := startFleet(t, ctx, s, devices)
	f.progress("start", devices)
	if f.onNode(s, 0) == 0 {
		t.Fatal("no device connects to node 0 first")
	}

	kill := func(what string, i int) {
		t.Helper()
		t.Logf("stopping node %d (%s) after %d uploads", i, what, f.done.Load())
		cl.Stop(i)
		f.progress(what+" down", devices)
		if err := cl.Restart(i); err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitMetaLeader(ctx); err != nil {
			t.Fatal(err)
		}
		f.progress(what+" back", devices)
	}
	i, err := cl.StreamLeader(ctx, "APP", "$MQTT_msgs")
	if err != nil {
		t.Fatal(err)
	}
	kill("$MQTT_msgs leader", i)
	if i, err = cl.MetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	kill("meta leader", i)
	// Devices are spread over the nodes by ID (DeviceConfig): node 0 has some.
	kill("a node with devices", 0)

	f.check(c, db)
}
