package console

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// admin returns an MQTT client with the stack's admin account, which may publish on any
// device's topics (as a misbehaving device could on its own).
func (e *env) admin() *mqttclient.Client {
	e.t.Helper()
	user, pass := e.stack.ServiceAccount(topics.RoleAdmin)
	c, err := mqttclient.New(mqttclient.Config{BrokerURL: e.stack.BrokerURL(), ClientID: "admin:t-" + randHex(e.t, 4),
		Username: user, Password: pass, NoReconnect: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		e.t.Fatalf("admin connect: %v", err)
	}
	return c
}

func publish(t *testing.T, c *mqttclient.Client, topic string, payload any) {
	t.Helper()
	publishRetained(t, c, topic, payload, false)
}

func publishRetained(t *testing.T, c *mqttclient.Client, topic string, payload any, retained bool) {
	t.Helper()
	var b []byte
	switch p := payload.(type) {
	case []byte:
		b = p
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	if tok := c.Publish(topic, 1, retained, b); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// TestIngestVerification: events that name another device's object, another device, a
// missing object, or nothing valid are not taken at their word; duplicates are indexed
// once.
func TestIngestVerification(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	real := e.upload("cam-02", "real.mp4", clipData(300, 3), time.Now())
	e.waitIndexed(real.Key)
	adm := e.admin()
	scheme := e.stack.Topics()
	now := time.Now().UTC().Truncate(time.Millisecond)
	forge := func(id, device, key string) protocol.UploadEvent {
		return protocol.UploadEvent{V: 1, ID: id, Device: device, Status: protocol.StatusCompleted, Bucket: e.stack.Bucket(),
			Key: key, Size: real.Size, CRC64: real.CRC64, RecordedAt: now, UploadedAt: now}
	}
	// cam-01 claims cam-02's object under its own name, then as cam-02.
	publish(t, adm, scheme.UploadEvent("cam-01"), forge("f1", "cam-01", real.Key))
	publish(t, adm, scheme.UploadEvent("cam-01"), forge("f2", "cam-02", real.Key))
	// An object that does not exist, under cam-01's own prefix: indexed, unverified.
	missing := forge("f3", "cam-01", e.stack.Prefix()+"cam-01/2026/01/01/ghost.mp4")
	publish(t, adm, scheme.UploadEvent("cam-01"), missing)
	publish(t, adm, scheme.UploadEvent("cam-01"), missing) // a redelivery
	// Garbage never reaches the index.
	publish(t, adm, scheme.UploadEvent("cam-01"), []byte(`{"v":1,"id":"x"`))
	publish(t, adm, scheme.UploadEvent("cam-01"), []byte(strings.Repeat("\xff", 100)))

	c := e.waitIndexed(missing.Key)
	if c.Verified || c.Reason != string(events.ReasonNotFound) || c.Device != "cam-01" {
		t.Fatalf("missing object: %+v", c)
	}
	testutil.WaitFor(t, "two rejections counted against cam-01", func() bool {
		d, err := e.db.Device(ctx, "cam-01")
		return err == nil && d.Rejected == 3 // two foreign, one not found
	})
	testutil.WaitFor(t, "the duplicate and the garbage handled", func() bool {
		st := e.console.Stats().Consumer
		return st.Duplicates >= 1 && st.Rejected[events.ReasonMalformed] == 2
	})
	// The real clip is untouched, and still cam-02's.
	got, err := e.db.Clip(ctx, real.Key)
	if err != nil || got.Device != "cam-02" || !got.Verified || got.EventID != real.ID {
		t.Fatalf("real clip: %+v, %v", got, err)
	}
	d, err := e.db.Device(ctx, "cam-01")
	if err != nil || d.Clips != 1 {
		t.Fatalf("cam-01: %+v, %v", d, err)
	}
}

// TestReconcile: an object whose event never came is indexed by the reconciler, once.
func TestReconcile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{dialect: Postgres})
	ctx := context.Background()
	// The reconciler's first pass runs at start: let it finish (a pass waits for the
	// one in progress), so that the object below is left to the passes of the test.
	testutil.WaitFor(t, "the first reconciler pass", func() bool { return e.console.Stats().Reconciler.Passes >= 1 })
	if _, err := e.console.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	key := e.stack.Prefix() + "cam-05/2026/01/02/lost.mp4"
	if err := e.bucket.PutObject(key, strings.NewReader("an upload whose event the broker dropped")); err != nil {
		t.Fatal(err)
	}
	// Outside any device prefix: skipped.
	if err := e.bucket.PutObject(e.stack.Prefix()+"stray.txt", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	n, err := e.console.Reconcile(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reconcile = %d, %v", n, err)
	}
	c, err := e.db.Clip(ctx, key)
	if err != nil || !c.Verified || !c.Reconciled || c.Device != "cam-05" || c.Size != 40 || !strings.HasPrefix(c.EventID, "r-") {
		t.Fatalf("reconciled clip: %+v, %v", c, err)
	}
	if n, err := e.console.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("second pass = %d, %v", n, err)
	}
	if d, err := e.db.Device(ctx, "cam-05"); err != nil || d.Clips != 1 || !d.LastSeen.IsZero() {
		t.Fatalf("device of a reconciled clip: %+v, %v", d, err)
	}
}

// TestEventsWhileDown: events published while the console is stopped are indexed when
// it starts again with the same client ID (the persistent session).
func TestEventsWhileDown(t *testing.T) {
	t.Parallel()
	var cfg Config
	e := newEnv(t, envOptions{config: func(c *Config) { cfg = *c }})
	first := e.upload("cam-01", "first.mp4", clipData(100, 1), time.Now())
	e.waitIndexed(first.Key)
	if err := e.console.Close(); err != nil {
		t.Fatal(err)
	}
	second := e.upload("cam-01", "second.mp4", clipData(100, 2), time.Now())
	if _, err := e.db.Clip(context.Background(), second.Key); err == nil {
		t.Fatal("indexed while the console was down")
	}
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	e.waitIndexed(second.Key)
}

// TestStartBeforeBroker: a console started while its broker is down serves its UI, keeps
// trying to connect, and indexes uploads once the broker is back on its address.
func TestStartBeforeBroker(t *testing.T) {
	t.Parallel()
	dials := testutil.NewLogSignal("cannot connect to the broker")
	e := newEnv(t, envOptions{brokerLater: true, config: func(c *Config) { c.Logger = zerolog.New(dials) }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- e.console.Start(ctx) }()
	select {
	case <-dials.Seen(): // a dial failed: nothing listens yet
	case err := <-started:
		t.Fatalf("Start returned while the broker was down: %v", err)
	}
	// The UI is up meanwhile.
	if status, body := e.api().do(http.MethodGet, "/healthz", nil); status != http.StatusOK {
		t.Fatalf("healthz while connecting: %d %s", status, body)
	}
	e.restart()
	if err := <-started; err != nil {
		t.Fatalf("Start after the broker came back: %v", err)
	}
	ev := e.upload("cam-01", "late.mp4", clipData(100, 1), time.Now())
	if c := e.waitIndexed(ev.Key); !c.Verified {
		t.Fatalf("clip after a late start: %+v", c)
	}
}

// TestStatusOnline: the device's retained status and its will drive the online flag.
func TestStatusOnline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	e.kit("cam-01")
	testutil.WaitFor(t, "cam-01 online", func() bool {
		d, err := e.db.Device(ctx, "cam-01")
		return err == nil && d.Online && !d.StatusAt.IsZero()
	})
	e.closeKit("cam-01")
	testutil.WaitFor(t, "cam-01 offline", func() bool {
		d, err := e.db.Device(ctx, "cam-01")
		return err == nil && !d.Online
	})
	// Garbage on status topics changes nothing.
	adm := e.admin()
	scheme := e.stack.Topics()
	publish(t, adm, scheme.Status("cam-01"), map[string]any{"v": 1, "device": "cam-02", "status": "online", "ts": time.Now()})
	publish(t, adm, scheme.Status("cam-01"), []byte(`online`))
	testutil.WaitFor(t, "garbage statuses counted", func() bool { return e.console.Stats().StatusErrors >= 2 })
	if d, _ := e.db.Device(ctx, "cam-01"); d.Online {
		t.Fatal("a foreign status set cam-01 online")
	}
	if _, err := e.db.Device(ctx, "cam-02"); err == nil {
		t.Fatal("a status on cam-01's topic created cam-02")
	}
}

// TestStatusLastSeen: a device's last seen is the time in its status messages, not when
// they arrive: the retained status a restarted console receives again does not make
// every device look seen at the restart. A time ahead of the console's clock counts as
// now, and an older status does not move last seen back.
func TestStatusLastSeen(t *testing.T) {
	t.Parallel()
	var cfg Config
	e := newEnv(t, envOptions{config: func(c *Config) { cfg = *c }})
	ctx := context.Background()
	adm := e.admin()
	topic := e.stack.Topics().Status("cam-07")
	seen := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Microsecond)
	status := func(s string, ts time.Time) map[string]any {
		return map[string]any{"v": 1, "device": "cam-07", "status": s, "ts": ts}
	}
	publishRetained(t, adm, topic, status("online", seen), true)
	var d *Device
	testutil.WaitFor(t, "cam-07 online", func() bool {
		var err error
		d, err = e.db.Device(ctx, "cam-07")
		return err == nil && d.Online
	})
	if !d.LastSeen.Equal(seen) {
		t.Fatalf("last seen %v, want the status's time %v (arrived %v)", d.LastSeen, seen, d.StatusAt)
	}

	// A restart an hour later: the retained status arrives again; last seen stays.
	if err := e.console.Close(); err != nil {
		t.Fatal(err)
	}
	e.offset.Add(int64(time.Hour))
	restarted, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := restarted.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	before := d.StatusAt
	testutil.WaitFor(t, "the retained status again", func() bool {
		d, err = e.db.Device(ctx, "cam-07")
		return err == nil && d.StatusAt.After(before)
	})
	if !d.LastSeen.Equal(seen) {
		t.Fatalf("after a restart: last seen %v, want %v", d.LastSeen, seen)
	}

	// An older offline status (a will set at an earlier connection) leaves it.
	publishRetained(t, adm, topic, status("offline", seen.Add(-time.Hour)), true)
	testutil.WaitFor(t, "cam-07 offline", func() bool {
		d, err = e.db.Device(ctx, "cam-07")
		return err == nil && !d.Online
	})
	if !d.LastSeen.Equal(seen) {
		t.Fatalf("after an older status: last seen %v, want %v", d.LastSeen, seen)
	}
	// The UI shows it (an online device is seen now).
	a := &api{t: t, base: restarted.URL(), hc: e.api().hc}
	a.login()
	if status, body := a.do(http.MethodGet, "/devices/cam-07", nil); status != http.StatusOK ||
		!strings.Contains(string(body), "<dt>Last seen</dt><dd>"+formatTime(seen)+"</dd>") {
		t.Fatalf("device page: %d, want last seen %s:\n%.1500s", status, formatTime(seen), body)
	}
	// A device clock a day ahead: seen now, not tomorrow.
	publishRetained(t, adm, topic, status("online", time.Now().Add(24*time.Hour)), true)
	testutil.WaitFor(t, "cam-07 online again", func() bool {
		d, err = e.db.Device(ctx, "cam-07")
		return err == nil && d.Online
	})
	if !d.LastSeen.Equal(d.StatusAt) {
		t.Fatalf("a status from the future: last seen %v, want its arrival %v", d.LastSeen, d.StatusAt)
	}
	// Clear the retained message (an empty payload is counted as a bad status).
	publishRetained(t, adm, topic, []byte{}, true)
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	s := topics.Default()
	topic := s.Status("cam-01")
	ok := `{"v":1,"device":"cam-01","status":"online","ts":"2026-01-01T00:00:00.123456Z"}`
	want := deviceStatus{Device: "cam-01", Online: true, TS: time.Date(2026, 1, 1, 0, 0, 0, 123456000, time.UTC)}
	if st, err := parseStatus(s, topic, []byte(ok)); err != nil || st != want {
		t.Fatalf("online: %+v %v", st, err)
	}
	if st, err := parseStatus(s, topic, []byte(strings.Replace(ok, "online", "offline", 1))); err != nil || st.Online || !st.TS.Equal(want.TS) {
		t.Fatalf("offline: %+v %v", st, err)
	}
	// Without a time: accepted, the time unknown.
	if st, err := parseStatus(s, topic, []byte(`{"v":1,"device":"cam-01","status":"online"}`)); err != nil || !st.TS.IsZero() {
		t.Fatalf("without ts: %+v %v", st, err)
	}
	for _, tc := range []struct{ topic, payload string }{
		{s.UploadEvent("cam-01"), ok},
		{"other/devices/cam-01/status", ok},
		{topic, ""},
		{topic, "null"},
		{topic, strings.Repeat(" ", maxStatusSize+1)},
		{topic, `{"v":2,"device":"cam-01","status":"online"}`},
		{topic, `{"v":1,"device":"cam-02","status":"online"}`},
		{topic, `{"v":1,"device":"cam-01","status":"ONLINE"}`},
		{topic, `{"v":1,"device":"cam-01","status":"online","extra":1}`},
		{topic, `{"v":1,"device":"cam-01","status":"online"} {}`},
		{topic, `{"v":1,"device":"cam-01","status":"online","ts":"yesterday"}`},
		{topic, `{"v":1,"device":"cam-01","status":"online","ts":1767225600}`},
		{topic, `{"v":1,"device":"cam-01","status":"online","ts":"0000-01-01T00:00:00Z"}`},
		{topic, `[1]`},
		{topic, "\xff\xfe"},
	} {
		if _, err := parseStatus(s, tc.topic, []byte(tc.payload)); err == nil {
			t.Errorf("parseStatus(%q, %.60q) accepted", tc.topic, tc.payload)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"v":1,"device":"cam-01","status":"online","ts":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"device":"cam-01","status":"offline"}`))
	s := topics.Default()
	f.Fuzz(func(t *testing.T, payload []byte) {
		st, err := parseStatus(s, s.Status("cam-01"), payload)
		if err == nil && st.Device != "cam-01" {
			t.Fatalf("accepted for device %q", st.Device)
		}
		if err != nil && st != (deviceStatus{}) {
			t.Fatalf("%+v with an error", st)
		}
	})
}

func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(Cursor{RecordedAt: t0, Key: "clips/cam-01/a.mp4"}))
	f.Add("")
	f.Add("MTIzOg")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil || c == nil {
			return
		}
		if c.Key == "" || len(c.Key) > maxKeyLen {
			t.Fatalf("accepted %+v", c)
		}
		again, err := decodeCursor(encodeCursor(*c))
		if err != nil || *again != *c {
			t.Fatalf("round trip %+v -> %+v, %v", c, again, err)
		}
	})
}
