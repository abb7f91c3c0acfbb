package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Helpers of the fault-injection tests (fault_*_test.go). Their names start with
// "fault" to stay clear of the other tests' helpers in this package.

// faultPoll polls cond every 20ms until it holds; it fails the test when ctx ends first.
func faultPoll(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// faultCall is one OSS request that went through a faultGate.
type faultCall struct {
	op     string // initiate, part, complete, put, other
	part   int
	status int // 0 when the gate aborted the request
	phase  int // the gate's phase when the request arrived
}

// faultGate is a loopback reverse proxy in front of OSS (the token workers hand its
// address to devices) that can hold requests of one kind (op: "part", "put", ...): the
// first `allow` of them go through, later ones wait until Release (then go on) or Abort
// (then their connection is cut, as by a server that died with requests in flight). It
// records every request.
type faultGate struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]
	held   atomic.Int64
	op     string

	mu      sync.Mutex
	allow   int // requests of op let through before holding; < 0: no limit
	passed  int
	release chan struct{} // closed by Release or Abort
	abort   bool
	phase   int
	calls   []faultCall
}

func newFaultGate(t testing.TB, op string, allow int) *faultGate {
	g := &faultGate{op: op, allow: allow, release: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(g.target.Load())
			pr.Out.Host = pr.In.Host // the device signed the host it dialled
		},
		// A request whose device went away while it was held fails here (its body cannot
		// be read): answer 502 without logging.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := faultCall{op: faultOp(r)}
		if c.op == "part" {
			c.part, _ = strconv.Atoi(r.URL.Query().Get("partNumber"))
		}
		g.mu.Lock()
		c.phase = g.phase
		hold := c.op == g.op && g.allow >= 0 && g.passed >= g.allow
		if !hold && c.op == g.op {
			g.passed++
		}
		release := g.release
		g.mu.Unlock()
		if hold {
			g.held.Add(1)
			select {
			case <-release:
			case <-r.Context().Done(): // the device went away
				g.record(c)
				return
			}
			g.mu.Lock()
			abort := g.abort
			g.mu.Unlock()
			if abort {
				g.record(c)
				panic(http.ErrAbortHandler) // closes the connection without a response
			}
		}
		sw := &faultStatusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		c.status = sw.status
		g.record(c)
	}))
	t.Cleanup(func() {
		g.Release()
		g.srv.Close()
	})
	return g
}

func (g *faultGate) record(c faultCall) {
	g.mu.Lock()
	g.calls = append(g.calls, c)
	g.mu.Unlock()
}

// setTarget points the gate at an OSS endpoint ("http://127.0.0.1:PORT").
func (g *faultGate) setTarget(t testing.TB, endpoint string) {
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	g.target.Store(u)
}

// endpoint is the gate's URL, for tokenworker.Config.OSS.Endpoint.
func (g *faultGate) endpoint() string { return g.srv.URL }

// Release lets held requests and all later ones through.
func (g *faultGate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allow = -1
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

// Abort cuts the held requests' connections and lets later requests through.
func (g *faultGate) Abort() {
	g.mu.Lock()
	g.abort = true
	g.mu.Unlock()
	g.Release()
}

// nextPhase starts a new phase of recorded calls (e.g. a second run of the device).
func (g *faultGate) nextPhase() {
	g.mu.Lock()
	g.phase++
	g.mu.Unlock()
}

func (g *faultGate) recorded() []faultCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// count returns how many recorded calls have op (and status, unless status is -1).
func (g *faultGate) count(op string, status int) int {
	n := 0
	for _, c := range g.recorded() {
		if c.op == op && (status < 0 || c.status == status) {
			n++
		}
	}
	return n
}

type faultStatusWriter struct {
	http.ResponseWriter
	status int
}

func (w *faultStatusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func faultOp(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "initiate"
	case r.Method == http.MethodPut && q.Has("uploadId") && q.Has("partNumber"):
		return "part"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "complete"
	case r.Method == http.MethodPut && len(q) == 0:
		return "put"
	}
	return "other"
}

// faultCheckpoint is what the tests read of a multipart checkpoint
// (StateDir/checkpoints/{eventID}.cp): the upload ID and the parts recorded as stored.
// It reads devicekit's own format ({"uploadId", "parts": [{"n", "etag"}]}) and the OSS
// SDK's (UploadID, Parts[].Chunk.Number and IsCompleted); JSON keys match regardless of
// case.
type faultCheckpoint struct {
	UploadID string
	Parts    []struct {
		N           int `json:"n"`
		Chunk       struct{ Number int }
		IsCompleted *bool
	}
}

// completed returns the numbers of the parts the checkpoint records as stored.
func (cp *faultCheckpoint) completed() []int {
	var n []int
	for _, p := range cp.Parts {
		switch {
		case p.IsCompleted == nil && p.N > 0:
			n = append(n, p.N)
		case p.IsCompleted != nil && *p.IsCompleted:
			n = append(n, p.Chunk.Number)
		}
	}
	slices.Sort(n)
	return n
}

// faultReadCheckpoint reads the only checkpoint in stateDir; a file being rewritten
// (the SDK writes it in place) reads as an error, to be polled again.
func faultReadCheckpoint(stateDir string) (*faultCheckpoint, error) {
	files, err := filepath.Glob(filepath.Join(stateDir, "checkpoints", "*.cp"))
	if err != nil {
		return nil, err
	}
	if len(files) != 1 {
		return nil, fmt.Errorf("%d checkpoint files", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return nil, err
	}
	var cp faultCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, err
	}
	return &cp, nil
}

// faultJournal is an entry of devicekit's upload journal (StateDir/uploads/*.json).
type faultJournal struct {
	ID       string `json:"id"`
	Key      string `json:"key"`
	Attempts int    `json:"attempts"`
}

// faultReadJournal returns the entries of the upload journal in stateDir.
func faultReadJournal(stateDir string) ([]faultJournal, error) {
	files, err := filepath.Glob(filepath.Join(stateDir, "uploads", "*.json"))
	if err != nil {
		return nil, err
	}
	var js []faultJournal
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var j faultJournal
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, fmt.Errorf("journal entry %s: %w", filepath.Base(f), err)
		}
		js = append(js, j)
	}
	return js, nil
}

// faultDirEntries lists dir's entries (nil if dir is missing).
func faultDirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// faultStateClean fails the test unless the device state directory holds no journal
// entry, checkpoint, queued event or temporary file.
func faultStateClean(t testing.TB, stateDir string) {
	t.Helper()
	for _, sub := range []string{"uploads", "checkpoints", "outbox"} {
		if left := faultDirEntries(t, filepath.Join(stateDir, sub)); len(left) > 0 {
			t.Errorf("state %s/ still holds %v", sub, left)
		}
	}
}

// faultMultipartDir is where the local cloud of a clipgatetest stack keeps unfinished
// multipart uploads of bucket (one directory per upload).
func faultMultipartDir(stackDir, bucket string) string {
	return filepath.Join(stackDir, "localcloud", "oss", bucket, "uploads")
}

// faultEvents collects upload events from a channel-like source until told to stop.
type faultEvents struct {
	mu     sync.Mutex
	byID   map[string][]*protocol.UploadEvent
	order  []string
	change chan struct{}
}

func newFaultEvents() *faultEvents {
	return &faultEvents{byID: map[string][]*protocol.UploadEvent{}, change: make(chan struct{})}
}

func (e *faultEvents) add(ev *protocol.UploadEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, seen := e.byID[ev.ID]; !seen {
		e.order = append(e.order, ev.ID)
	}
	e.byID[ev.ID] = append(e.byID[ev.ID], ev)
	close(e.change)
	e.change = make(chan struct{})
}

// seen returns how many times event id has arrived.
func (e *faultEvents) seen(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.byID[id])
}

// waitIDs waits until every id has arrived; it returns the missing ones if ctx ends.
func (e *faultEvents) waitIDs(ctx context.Context, ids []string) []string {
	for {
		e.mu.Lock()
		var missing []string
		for _, id := range ids {
			if len(e.byID[id]) == 0 {
				missing = append(missing, id)
			}
		}
		ch := e.change
		e.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return missing
		}
	}
}

// forDevice returns the distinct event IDs received from device, in arrival order, and
// every delivery of each.
func (e *faultEvents) forDevice(device string) ([]string, map[string][]*protocol.UploadEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	all := map[string][]*protocol.UploadEvent{}
	for _, id := range e.order {
		evs := e.byID[id]
		if evs[0].Device == device {
			ids = append(ids, id)
			all[id] = slices.Clone(evs)
		}
	}
	return ids, all
}

// faultPersistentConsumer is a backend consumer with a persistent session (clean
// session false, QoS 1): each connect makes a new paho client with the same client ID,
// so that what the broker kept for the session is what arrives.
type faultPersistentConsumer struct {
	url, clientID, user, password, filter string
	events                                *faultEvents
	malformed                             atomic.Int64

	mu     sync.Mutex
	client paho.Client
}

func newFaultPersistentConsumer(brokerURL, user, password, instance, filter string) *faultPersistentConsumer {
	return &faultPersistentConsumer{
		url: brokerURL, clientID: broker.ServiceClientID(user, instance), user: user, password: password,
		filter: filter, events: newFaultEvents(),
	}
}

// connect connects; with subscribe it also subscribes to the filter (the session keeps
// the subscription afterwards). The session present flag of the CONNACK is returned.
func (c *faultPersistentConsumer) connect(ctx context.Context, subscribe bool) (bool, error) {
	opts := paho.NewClientOptions().
		SetStore(mqttclient.NewStore()). // a copy per resend: paho issue #703
		AddBroker(c.url).
		SetClientID(c.clientID).
		SetUsername(c.user).
		SetPassword(c.password).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(mqttTimeout).
		SetDefaultPublishHandler(c.onMessage) // queued messages come before any Subscribe
	client := paho.NewClient(opts)
	tok := client.Connect()
	if err := waitToken(ctx, tok); err != nil {
		return false, err
	}
	present := tok.(*paho.ConnectToken).SessionPresent()
	c.mu.Lock()
	c.client = client
	c.mu.Unlock()
	if subscribe {
		st := client.Subscribe(c.filter, 1, c.onMessage)
		if err := waitToken(ctx, st); err != nil {
			return present, err
		}
		if code := st.(*paho.SubscribeToken).Result()[c.filter]; code != 1 {
			return present, fmt.Errorf("SUBACK %#x for %s, want QoS 1", code, c.filter)
		}
	}
	return present, nil
}

func (c *faultPersistentConsumer) onMessage(_ paho.Client, m paho.Message) {
	ev, err := protocol.DecodeUploadEvent(m.Payload())
	if err != nil {
		c.malformed.Add(1)
		return
	}
	c.events.add(ev)
}

// disconnect ends the connection cleanly; the session stays on the broker.
func (c *faultPersistentConsumer) disconnect() {
	c.mu.Lock()
	client := c.client
	c.client = nil
	c.mu.Unlock()
	if client != nil {
		client.Disconnect(250)
	}
}

// faultCheckEvents checks the events received from device: every ID in want arrived,
// each completed event matches what Upload returned, and no other completed event ID
// names the same object (a clip is never announced under two IDs). Failed events (one
// per failed attempt) are allowed and returned.
func faultCheckEvents(t testing.TB, events *faultEvents, device string, want map[string]*protocol.UploadEvent) (failed int) {
	t.Helper()
	ids, all := events.forDevice(device)
	byKey := map[string][]string{}
	for _, id := range ids {
		ev := all[id][0]
		for _, again := range all[id][1:] {
			if !sameEvent(ev, again) {
				t.Errorf("event %s delivered twice with different content: %+v / %+v", id, ev, again)
			}
		}
		if ev.Status == protocol.StatusFailed {
			failed++
			continue
		}
		byKey[ev.Key] = append(byKey[ev.Key], id)
		w, ok := want[id]
		if !ok {
			t.Errorf("completed event %s for %s was not returned by any Upload", id, ev.Key)
			continue
		}
		if ev.Key != w.Key || ev.Size != w.Size || ev.CRC64 != w.CRC64 || ev.Status != protocol.StatusCompleted {
			t.Errorf("event %s: key %s size %d crc %s status %s; Upload returned key %s size %d crc %s", id, ev.Key, ev.Size, ev.CRC64, ev.Status, w.Key, w.Size, w.CRC64)
		}
	}
	for key, ids := range byKey {
		if len(ids) > 1 {
			t.Errorf("%s announced as completed under %d event IDs %v", key, len(ids), ids)
		}
	}
	for id, w := range want {
		if len(all[id]) == 0 {
			t.Errorf("event %s (%s) never arrived", id, w.Key)
		}
	}
	return failed
}

// faultTrim shortens long process output for a failure message.
func faultTrim(s string) string {
	const max = 4000
	if len(s) > max {
		return s[:max/2] + "\n...\n" + s[len(s)-max/2:]
	}
	return strings.TrimSpace(s)
}
