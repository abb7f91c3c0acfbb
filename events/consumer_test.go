package events_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// Clips uploaded by devices (PutObject and multipart) arrive verified, with the
// publisher and the object's ETag, whatever their names (UTF-8 keys: the kit keeps
// Unicode, spaces, '#', '?' and '%').
func TestUploadsArriveVerified(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	c := startConsumer(t, consumerConfig(t, stack, "consumer:verified"), rec.handle)

	kit := stack.Kit(t, ctx, "cam-01", func(cfg *devicekit.Config) {
		cfg.MultipartThreshold = 200 << 10
		cfg.PartSize = 100 << 10
	})
	dir := t.TempDir()
	sent := []*clipgate.UploadEvent{
		uploadClip(t, ctx, kit, dir, "small.mp4", 1000),
		uploadClip(t, ctx, kit, dir, "large.mp4", 300<<10), // multipart
		uploadClip(t, ctx, kit, dir, "门口 camera #1.mp4", 2000),
		uploadClip(t, ctx, kit, dir, "50% & more?x=1+2 📹.ts", 3000),
	}
	got := rec.collect(t, ctx, len(sent))
	st := settled(t, ctx, c, int64(len(sent)))
	admin := stack.AdminBucket(t)
	for _, s := range sent {
		ev := got[s.ID]
		if ev == nil {
			t.Fatalf("event %s not delivered", s.ID)
		}
		if !ev.Verified || ev.Rejected() || ev.Reconciled || ev.Publisher != "cam-01" {
			t.Errorf("event %s: verified %v, reason %q, reconciled %v, publisher %q; want verified from cam-01",
				s.ID, ev.Verified, ev.Reason, ev.Reconciled, ev.Publisher)
		}
		if ev.Key != s.Key || ev.Size != s.Size || ev.CRC64 != s.CRC64 {
			t.Errorf("event %s: %s %d %s, device sent %s %d %s", s.ID, ev.Key, ev.Size, ev.CRC64, s.Key, s.Size, s.CRC64)
		}
		h, err := admin.GetObjectDetailedMeta(s.Key)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Trim(h.Get("ETag"), `"`); ev.ETag != want || want == "" {
			t.Errorf("event %s: ETag %q, object has %q", s.ID, ev.ETag, want)
		}
	}
	if st.Verified != 4 || st.Handled != 4 || len(st.Rejected) != 0 || !st.Connected {
		t.Errorf("stats %+v: want 4 verified and handled, none rejected, connected", st)
	}
}

// A device cannot announce another device's object, one that does not exist, one with
// another size or checksum, one in another bucket, or an event in another device's name:
// each is handed over rejected with its reason. A failed-upload event is neither.
func TestForgedEventsRejected(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	c := startConsumer(t, consumerConfig(t, stack, "consumer:forged"), rec.handle)
	admin := stack.AdminBucket(t)

	victim := stack.Prefix() + "cam-victim/2024/05/01/secret.mp4"
	victimData := putObject(t, admin, victim, 500)
	own := stack.Prefix() + "cam-evil/2024/05/01/mine.mp4"
	ownData := putObject(t, admin, own, 700)

	evil := rawDevice(t, stack, "cam-evil")
	type forged struct {
		ev     *clipgate.UploadEvent
		reason events.Reason
	}
	var cases []forged
	add := func(reason events.Reason, mod func(ev *clipgate.UploadEvent)) {
		ev := completedEvent(stack, "cam-evil", own, ownData)
		mod(ev)
		cases = append(cases, forged{ev, reason})
	}
	add(events.ReasonWrongPrefix, func(ev *clipgate.UploadEvent) { // the victim's real object
		ev.Key, ev.Size, ev.CRC64 = victim, int64(len(victimData)), testutil.CRC64(victimData)
	})
	add(events.ReasonWrongPrefix, func(ev *clipgate.UploadEvent) { // a path out of its prefix
		ev.Key, ev.Size, ev.CRC64 = stack.Prefix()+"cam-evil/../cam-victim/2024/05/01/secret.mp4", int64(len(victimData)), testutil.CRC64(victimData)
	})
	add(events.ReasonNotFound, func(ev *clipgate.UploadEvent) { ev.Key = stack.Prefix() + "cam-evil/2024/05/01/ghost.mp4" })
	add(events.ReasonSizeMismatch, func(ev *clipgate.UploadEvent) { ev.Size++ })
	add(events.ReasonCRCMismatch, func(ev *clipgate.UploadEvent) { ev.CRC64 = testutil.CRC64(append(ownData, 0)) })
	add(events.ReasonWrongBucket, func(ev *clipgate.UploadEvent) { ev.Bucket = "other-bucket" })
	add(events.ReasonWrongDevice, func(ev *clipgate.UploadEvent) { // in the victim's name
		ev.Device, ev.Key, ev.Size, ev.CRC64 = "cam-victim", victim, int64(len(victimData)), testutil.CRC64(victimData)
	})
	add("", func(ev *clipgate.UploadEvent) { // a failed upload: nothing to check
		ev.Status, ev.Bucket, ev.Key, ev.Size, ev.CRC64, ev.UploadedAt, ev.Error = clipgate.StatusFailed, "", "", 0, "", time.Time{}, "disk full"
	})
	add("", func(*clipgate.UploadEvent) {}) // and the honest event passes
	for _, fc := range cases {
		publishEvent(t, stack, evil, "cam-evil", fc.ev)
	}
	got := rec.collect(t, ctx, len(cases))
	for _, fc := range cases {
		ev := got[fc.ev.ID]
		if ev.Reason != fc.reason || ev.Publisher != "cam-evil" {
			t.Errorf("%s: reason %q, publisher %q; want reason %q", fmtEvent(ev), ev.Reason, ev.Publisher, fc.reason)
		}
		wantVerified := fc.reason == "" && fc.ev.Status == clipgate.StatusCompleted
		if ev.Verified != wantVerified {
			t.Errorf("%s: verified %v, want %v", fmtEvent(ev), ev.Verified, wantVerified)
		}
		if fc.reason != "" && (ev.Detail == "" || ev.ETag != "") {
			t.Errorf("%s: a rejection needs a detail and no ETag", fmtEvent(ev))
		}
	}
	st := settled(t, ctx, c, int64(len(cases)))
	want := map[events.Reason]int64{events.ReasonWrongPrefix: 2, events.ReasonNotFound: 1, events.ReasonSizeMismatch: 1,
		events.ReasonCRCMismatch: 1, events.ReasonWrongBucket: 1, events.ReasonWrongDevice: 1}
	for r, n := range want {
		if st.Rejected[r] != n {
			t.Errorf("stats: %d rejected %s, want %d (all: %v)", st.Rejected[r], r, n, st.Rejected)
		}
	}
	if st.Verified != 1 || st.Failed != 1 || st.Handled != int64(len(cases)) || st.OSSErrors != 0 {
		t.Errorf("stats %+v: want 1 verified, 1 failed, %d handled, no OSS errors", st, len(cases))
	}
}

// The same event ID from the same device reaches the handler once; the same ID from
// another device is another event. A Deduper sees every handled event marked.
func TestDuplicatesHandledOnce(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	dedup := &memDeduper{}
	cfg := consumerConfig(t, stack, "consumer:dups")
	cfg.Dedup = dedup
	c := startConsumer(t, cfg, rec.handle)
	admin := stack.AdminBucket(t)

	key := stack.Prefix() + "cam-a/2024/05/01/a.mp4"
	data := putObject(t, admin, key, 100)
	ev := completedEvent(stack, "cam-a", key, data)
	dev := rawDevice(t, stack, "cam-a")
	for range 3 {
		publishEvent(t, stack, dev, "cam-a", ev)
	}
	// cam-b reuses the ID for its own (failed) upload: not a duplicate of cam-a's.
	other := &clipgate.UploadEvent{V: 1, ID: ev.ID, Device: "cam-b", Status: clipgate.StatusFailed, Error: "x"}
	publishEvent(t, stack, rawDevice(t, stack, "cam-b"), "cam-b", other)

	testutil.WaitFor(t, "2 handled and 2 duplicates", func() bool {
		st := c.Stats()
		return st.Handled == 2 && st.Duplicates == 2
	})
	calls := rec.callsOf(ev.ID)
	if len(calls) != 2 || calls[0].Device == calls[1].Device {
		t.Fatalf("handler calls for ID %s: %d (%v), want one per device", ev.ID, len(calls), calls)
	}

	// cam-evil announces, in cam-a's name, the ID cam-a will use next: the forgery is
	// rejected, and cam-a's real event with that ID is still handled.
	key2 := stack.Prefix() + "cam-a/2024/05/01/b.mp4"
	next := completedEvent(stack, "cam-a", key2, putObject(t, admin, key2, 50))
	publishEvent(t, stack, rawDevice(t, stack, "cam-evil"), "cam-evil", next)
	testutil.WaitFor(t, "the forgery handled", func() bool { return c.Stats().Handled == 3 })
	publishEvent(t, stack, dev, "cam-a", next)
	testutil.WaitFor(t, "the real event handled", func() bool { return c.Stats().Handled == 4 })
	calls = rec.callsOf(next.ID)
	if len(calls) != 2 || calls[0].Reason != events.ReasonWrongDevice || !calls[1].Verified || calls[1].Publisher != "cam-a" {
		t.Fatalf("calls for the shadowed ID: %+v; want the forgery rejected, then the real event verified", calls)
	}

	// A second consumer (a restart, or another member) with the same durable record
	// skips the event too: the Deduper, not memory, knows it.
	rec2 := newRecorder()
	cfg2 := consumerConfig(t, stack, "consumer:dups2")
	cfg2.Group = "other-service"
	cfg2.Dedup = dedup
	c2 := startConsumer(t, cfg2, rec2.handle)
	publishEvent(t, stack, dev, "cam-a", ev)
	testutil.WaitFor(t, "the Deduper's duplicate", func() bool { return c2.Stats().Duplicates == 1 })
	if n := len(rec2.callsOf(ev.ID)); n != 0 {
		t.Fatalf("second consumer handled a recorded event %d times", n)
	}
	if dedup.markCount() != 4 {
		t.Errorf("Deduper marked %d events, want 4", dedup.markCount())
	}
}

// A handler error is retried in place with backoff; the retries are marked Redelivered.
func TestHandlerErrorRetried(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	rec.fail = func(_ *events.Event, call int) error {
		if call < 3 {
			return errors.New("database busy")
		}
		return nil
	}
	cfg := consumerConfig(t, stack, "consumer:retry")
	cfg.MaxAttempts = 3
	c := startConsumer(t, cfg, rec.handle)
	key := stack.Prefix() + "cam-r/2024/05/01/a.mp4"
	ev := completedEvent(stack, "cam-r", key, putObject(t, stack.AdminBucket(t), key, 10))
	publishEvent(t, stack, rawDevice(t, stack, "cam-r"), "cam-r", ev)
	rec.next(t, ctx)
	calls := rec.callsOf(ev.ID)
	if len(calls) != 3 || calls[0].Redelivered || !calls[1].Redelivered || !calls[2].Redelivered {
		t.Fatalf("calls %+v: want 3, the first not redelivered, then redelivered", calls)
	}
	st := settled(t, ctx, c, 1)
	if st.HandlerErrors != 2 || st.Retries != 2 || st.Unacked != 0 || st.Resumes != 0 || st.Handled != 1 {
		t.Errorf("stats %+v: want 2 handler errors and retries, nothing unacknowledged, 1 handled", st)
	}
}

// When the attempts are used up the event is not acknowledged: the consumer resumes its
// session and the broker sends it again (DUP), until the handler accepts it.
func TestHandlerErrorRedelivered(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	rec.fail = func(_ *events.Event, call int) error {
		if call == 1 {
			return errors.New("database down")
		}
		return nil
	}
	cfg := consumerConfig(t, stack, "consumer:redeliver")
	cfg.MaxAttempts = 1
	c := startConsumer(t, cfg, rec.handle)
	key := stack.Prefix() + "cam-d/2024/05/01/a.mp4"
	ev := completedEvent(stack, "cam-d", key, putObject(t, stack.AdminBucket(t), key, 10))
	publishEvent(t, stack, rawDevice(t, stack, "cam-d"), "cam-d", ev)

	got := rec.next(t, ctx)
	if !got.Redelivered || !got.Verified {
		t.Fatalf("accepted event: %s, redelivered %v; want verified and redelivered", fmtEvent(got), got.Redelivered)
	}
	calls := rec.callsOf(ev.ID)
	if len(calls) != 2 || calls[0].Redelivered {
		t.Fatalf("calls %+v: want 2, the first fresh", calls)
	}
	st := settled(t, ctx, c, 1)
	if st.Unacked != 1 || st.Resumes < 1 || st.Received < 2 || st.Handled != 1 {
		t.Errorf("stats %+v: want 1 unacknowledged, a resume, 2 receptions, 1 handled", st)
	}
	// After the resume the consumer still takes new events.
	ev2 := &clipgate.UploadEvent{V: 1, ID: "ev-after-resume", Device: "cam-d2", Status: clipgate.StatusFailed, Error: "x"}
	publishEvent(t, stack, rawDevice(t, stack, "cam-d2"), "cam-d2", ev2)
	if got := rec.next(t, ctx); got.ID != ev2.ID {
		t.Fatalf("after the resume got %s", fmtEvent(got))
	}
}

// Transient OSS failures (here: connection refused) are retried and then redelivered,
// never turned into a rejection; the handler sees the event once, verified.
func TestTransientOSSErrorRedelivered(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	flaky := newFlakyStat(t, stack, 3)
	cfg := consumerConfig(t, stack, "consumer:flaky")
	cfg.OSS = flaky
	cfg.MaxAttempts = 2
	c := startConsumer(t, cfg, rec.handle)
	key := stack.Prefix() + "cam-f/2024/05/01/a.mp4"
	ev := completedEvent(stack, "cam-f", key, putObject(t, stack.AdminBucket(t), key, 10))
	publishEvent(t, stack, rawDevice(t, stack, "cam-f"), "cam-f", ev)

	got := rec.next(t, ctx)
	if !got.Verified || got.ID != ev.ID {
		t.Fatalf("got %s; want %s verified", fmtEvent(got), ev.ID)
	}
	if n := len(rec.callsOf(ev.ID)); n != 1 {
		t.Errorf("handler called %d times, want once", n)
	}
	st := settled(t, ctx, c, 1)
	if st.OSSErrors != 3 || st.Unacked < 1 || st.Resumes < 1 || len(st.Rejected) != 0 || flaky.Calls() != 4 {
		t.Errorf("stats %+v, %d HEADs: want 3 OSS errors, a redelivery, no rejection, 4 HEADs", st, flaky.Calls())
	}
}

// A Deduper that fails is transient too: the event waits, then goes through.
func TestDedupErrorRedelivered(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	dedup := &memDeduper{}
	dedup.setSeenErr(errors.New("database unreachable"))
	cfg := consumerConfig(t, stack, "consumer:dedup-err")
	cfg.Dedup = dedup
	cfg.MaxAttempts = 2
	c := startConsumer(t, cfg, rec.handle)
	ev := &clipgate.UploadEvent{V: 1, ID: "ev-dedup", Device: "cam-e", Status: clipgate.StatusFailed, Error: "x"}
	publishEvent(t, stack, rawDevice(t, stack, "cam-e"), "cam-e", ev)
	testutil.WaitFor(t, "a left event", func() bool { return c.Stats().Unacked >= 1 })
	if n := len(rec.callsOf(ev.ID)); n != 0 {
		t.Fatalf("handler called %d times while the Deduper failed", n)
	}
	dedup.setSeenErr(nil)
	if got := rec.next(t, ctx); got.ID != ev.ID || !got.Redelivered {
		t.Fatalf("got %s (redelivered %v), want %s redelivered", fmtEvent(got), got.Redelivered, ev.ID)
	}
	if st := c.Stats(); st.DedupErrors < 2 {
		t.Errorf("stats %+v: want at least 2 Dedup errors", st)
	}
}

// Garbage on the event topics (published by an admin account, which may publish
// anywhere under the root) is acknowledged, dead-lettered, counted, and does not stop
// the consumer. A dead-letter callback error has the message redelivered.
func TestGarbageDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	var (
		letters  = make(chan *events.Malformed, 64)
		dlCalls  atomic.Int32
		failOnce atomic.Bool
	)
	failOnce.Store(true)
	cfg := consumerConfig(t, stack, "consumer:garbage")
	cfg.MaxAttempts = 1
	cfg.DeadLetter = func(_ context.Context, m *events.Malformed) error {
		dlCalls.Add(1)
		if bytes.Equal(m.Payload, []byte("fail once")) && failOnce.CompareAndSwap(true, false) {
			return errors.New("dead-letter store down")
		}
		letters <- m
		return nil
	}
	c := startConsumer(t, cfg, rec.handle)
	admin := adminClient(t, stack)
	topic := stack.Topics().UploadEvent("cam-g")
	garbage := [][]byte{
		nil,
		[]byte("not json"),
		[]byte("{}"),
		[]byte(`{"v":2,"id":"x","device":"cam-g","status":"failed","error":"e"}`),
		[]byte(`{"v":1,"id":"x","device":"cam-g","status":"failed","error":"e","extra":1}`),
		[]byte(`{"v":1,"id":"x","device":"cam-g","status":"completed"}`),
		[]byte(`{"v":1,"id":"x","device":"cam-g","status":"failed","error":"e"}{}`),
		{0xff, 0xfe, 0x00, 0x01},
		bytes.Repeat([]byte("A"), protocol.MaxMessageSize+1),
		[]byte(`{"v":1,"id":"../../etc","device":"cam-g","status":"failed","error":"e"}`),
	}
	for _, g := range garbage {
		publish(t, admin, topic, g)
	}
	testutil.WaitFor(t, "the garbage counted", func() bool {
		return c.Stats().Rejected[events.ReasonMalformed] == int64(len(garbage))
	})
	// Then one whose dead letter fails at first, and a valid event, which still gets through.
	garbage = append(garbage, []byte("fail once"))
	publish(t, admin, topic, garbage[len(garbage)-1])
	good := &clipgate.UploadEvent{V: 1, ID: "ev-after-garbage", Device: "cam-g", Status: clipgate.StatusFailed, Error: "x"}
	publishEvent(t, stack, admin, "cam-g", good)
	if got := rec.next(t, ctx); got.ID != good.ID || got.Publisher != "cam-g" {
		t.Fatalf("got %s, want %s", fmtEvent(got), good.ID)
	}
	seen := map[string]bool{}
	for len(seen) < len(garbage) {
		select {
		case m := <-letters:
			if m.Err == nil || m.Topic != topic || m.Publisher != "cam-g" {
				t.Errorf("dead letter %q: err %v, topic %q, publisher %q", m.Payload, m.Err, m.Topic, m.Publisher)
			}
			if protocol.ErrorCode(m.Err) != clipgate.CodeInvalid {
				t.Errorf("dead letter %.40q: error %v is not a protocol CodeInvalid", m.Payload, m.Err)
			}
			seen[string(m.Payload)] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d dead letters", len(seen), len(garbage))
		}
	}
	// The last dead letter is counted after its callback returns.
	testutil.WaitFor(t, "the last dead letter counted", func() bool {
		return c.Stats().Rejected[events.ReasonMalformed] == int64(len(garbage))
	})
	st := settled(t, ctx, c, 1)
	if st.Rejected[events.ReasonMalformed] != int64(len(garbage)) || st.Handled != 1 || st.Unacked != 1 {
		t.Errorf("stats %+v: want %d malformed, 1 handled, 1 unacknowledged (the failed dead letter)", st, len(garbage))
	}
	if n := dlCalls.Load(); n != int32(len(garbage))+1 {
		t.Errorf("dead-letter callback called %d times, want %d", n, len(garbage)+1)
	}
	if n := len(rec.callsOf("x")); n != 0 {
		t.Errorf("a malformed event reached the handler %d times", n)
	}
}

// Events published while the consumer is down wait in its persistent session and arrive
// when it starts again with the same ClientID; so does an event whose handler was still
// running at Close (it was not acknowledged).
func TestPersistentSession(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	cfg := consumerConfig(t, stack, "consumer:persistent")

	// First run: the handler holds the first event until Close cancels it.
	started := make(chan string, 1)
	c1, err := events.NewConsumer(cfg, func(ctx context.Context, ev *events.Event) error {
		started <- ev.ID
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	kit := stack.Kit(t, ctx, "cam-p", nil)
	dir := t.TempDir()
	held := uploadClip(t, ctx, kit, dir, "held.mp4", 100)
	select {
	case id := <-started:
		if id != held.ID {
			t.Fatalf("handler got %s, want %s", id, held.ID)
		}
	case <-ctx.Done():
		t.Fatal("first event never reached the handler")
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c1.Stats(); st.Handled != 0 || st.Connected {
		t.Fatalf("closed consumer stats %+v", st)
	}

	// While it is down: three more uploads.
	var sent []*clipgate.UploadEvent
	for _, name := range []string{"a.mp4", "b.mp4", "c.mp4"} {
		sent = append(sent, uploadClip(t, ctx, kit, dir, name, 200))
	}

	rec := newRecorder()
	c2 := startConsumer(t, cfg, rec.handle)
	got := rec.collect(t, ctx, len(sent)+1)
	for _, s := range append(sent, held) {
		ev := got[s.ID]
		if ev == nil || !ev.Verified {
			t.Fatalf("event %s missing or not verified after restart: %v", s.ID, ev)
		}
	}
	if !got[held.ID].Redelivered {
		t.Errorf("the event held at Close came back without the DUP flag")
	}
	if st := settled(t, ctx, c2, 4); st.Verified != 4 {
		t.Errorf("stats %+v: want 4 verified", st)
	}
}

// Members of one group share the events; each event is handled by one of them.
func TestSharedGroup(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	c1 := startConsumer(t, consumerConfig(t, stack, "consumer:member-1"), rec.handle)
	c2 := startConsumer(t, consumerConfig(t, stack, "consumer:member-2"), rec.handle)
	dev := rawDevice(t, stack, "cam-s")
	const n = 20
	for i := range n {
		ev := &clipgate.UploadEvent{V: 1, ID: "ev-" + string(rune('a'+i)), Device: "cam-s", Status: clipgate.StatusFailed, Error: "x"}
		publishEvent(t, stack, dev, "cam-s", ev)
	}
	rec.collect(t, ctx, n)
	testutil.WaitFor(t, "every event counted", func() bool { return c1.Stats().Handled+c2.Stats().Handled >= n })
	s1, s2 := c1.Stats(), c2.Stats()
	if s1.Handled+s2.Handled != n || s1.Handled == 0 || s2.Handled == 0 {
		t.Errorf("members handled %d and %d of %d: want all, shared", s1.Handled, s2.Handled, n)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	good := consumerConfig(t, stack, "consumer:cfg")
	otherBucket, err := stack.AdminBucket(t).Client.Bucket("another-bucket")
	if err != nil {
		t.Fatal(err)
	}
	h := func(context.Context, *events.Event) error { return nil }
	cases := map[string]func(*events.Config){
		"no broker":         func(c *events.Config) { c.BrokerURL = "" },
		"broker no scheme":  func(c *events.Config) { c.BrokerURL = "127.0.0.1:1883" },
		"no password":       func(c *events.Config) { c.Password = "" },
		"no client ID":      func(c *events.Config) { c.ClientID = "" },
		"NUL client ID":     func(c *events.Config) { c.ClientID = "a\x00b" },
		"bad group":         func(c *events.Config) { c.Group = "a/b" },
		"bad bucket":        func(c *events.Config) { c.Bucket = "Bad_Bucket" },
		"bad prefix":        func(c *events.Config) { c.Prefix = "clips" },
		"traversal prefix":  func(c *events.Config) { c.Prefix = "../clips/" },
		"no OSS":            func(c *events.Config) { c.OSS = nil },
		"nil bucket":        func(c *events.Config) { c.OSS = (*oss.Bucket)(nil) },
		"other bucket":      func(c *events.Config) { c.OSS = otherBucket },
		"concurrency":       func(c *events.Config) { c.Concurrency = -1 },
		"huge concurrency":  func(c *events.Config) { c.Concurrency = events.MaxConcurrency + 1 },
		"attempts":          func(c *events.Config) { c.MaxAttempts = -2 },
		"negative timeout":  func(c *events.Config) { c.OSSTimeout = -time.Second },
		"keepalive":         func(c *events.Config) { c.KeepAlive = time.Millisecond },
		"negative dedup":    func(c *events.Config) { c.DedupSize = -1 },
		"negative dedupTTL": func(c *events.Config) { c.DedupTTL = -time.Second },
	}
	for name, mod := range cases {
		cfg := good
		mod(&cfg)
		if _, err := events.NewConsumer(cfg, h); !errors.Is(err, events.ErrInvalidConfig) {
			t.Errorf("%s: error %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := events.NewConsumer(good, nil); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("nil handler: error %v", err)
	}
	c, err := events.NewConsumer(good, h)
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	c.Close()
	if err := c.Start(context.Background()); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}

	// Wrong credentials: Start fails and leaves nothing running.
	bad := good
	bad.Password = "wrong"
	c, err = events.NewConsumer(bad, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(testContext(t)); !errors.Is(err, mqttclient.ErrRefused) {
		t.Errorf("Start with a wrong password: %v, want a refused login (at once, not retried)", err)
	}
	// A token worker account may not subscribe to events: the refused subscription
	// fails Start.
	worker := good
	worker.Username, worker.Password = stack.ServiceAccount(topics.RoleTokenWorker)
	worker.ClientID = "tokenworker:not-a-consumer"
	if c, err = events.NewConsumer(worker, h); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(testContext(t)); err == nil || !strings.Contains(err.Error(), "refused the subscription") {
		t.Errorf("Start as a token worker: %v, want a refused subscription", err)
	}
}

// A panicking handler does not take the consumer down: the panic counts as a handler
// error and the event is tried again.
func TestHandlerPanicRecovered(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	rec := newRecorder()
	rec.fail = func(_ *events.Event, call int) error {
		if call == 1 {
			panic("handler bug")
		}
		return nil
	}
	cfg := consumerConfig(t, stack, "consumer:panic")
	cfg.MaxAttempts = 2
	c := startConsumer(t, cfg, rec.handle)
	ev := &clipgate.UploadEvent{V: 1, ID: "ev-panic", Device: "cam-x", Status: clipgate.StatusFailed, Error: "x"}
	publishEvent(t, stack, rawDevice(t, stack, "cam-x"), "cam-x", ev)
	if got := rec.next(t, ctx); got.ID != ev.ID || !got.Redelivered {
		t.Fatalf("got %s, redelivered %v", fmtEvent(got), got.Redelivered)
	}
	if st := settled(t, ctx, c, 1); st.HandlerErrors != 1 || st.Handled != 1 || st.Failed != 1 {
		t.Errorf("stats %+v: want 1 handler error, 1 handled failed-upload event", st)
	}
}

// A consumer started while its broker is down (a stack stopped, nothing listening on its
// address) keeps trying to connect, then connects and takes events once the broker is back there.
func TestStartBeforeBroker(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	first, again := stoppedStack(t)
	cfg := consumerConfig(t, first, "consumer:early")
	dials := testutil.NewLogSignal("cannot connect to the broker")
	cfg.Logger = zerolog.New(dials)
	rec := newRecorder()
	c, err := events.NewConsumer(cfg, rec.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	started := make(chan error, 1)
	go func() { started <- c.Start(ctx) }()
	select {
	case <-dials.Seen(): // a dial failed: nothing listens yet
	case err := <-started:
		t.Fatalf("Start returned while the broker was down: %v", err)
	}
	stack := again()
	if err := <-started; err != nil {
		t.Fatalf("Start after the broker came back: %v", err)
	}
	kit := stack.Kit(t, ctx, "cam-late", nil)
	sent := uploadClip(t, ctx, kit, t.TempDir(), "late.mp4", 100)
	if ev := rec.next(t, ctx); ev.ID != sent.ID || !ev.Verified {
		t.Fatalf("event after a late start: %s", fmtEvent(ev))
	}
}
