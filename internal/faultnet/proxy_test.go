package faultnet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/testutil"
)

// echoServer answers every line with prefix+line, and closes its side after the client
// half-closes.
type echoServer struct {
	ln       net.Listener
	prefix   string
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newEcho(t *testing.T, prefix string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, prefix: prefix}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, e.prefix+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Every read in these tests is bounded, so that a broken proxy fails instead of hanging.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// roundTrip sends a line and returns the answer.
func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func TestForwards(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "a:")
	p := newProxy(t, e.addr())
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Errorf("Addr %q is not on 127.0.0.1", p.Addr())
	}
	if p.Target() != e.addr() {
		t.Errorf("Target %q, want %q", p.Target(), e.addr())
	}
	c := dial(t, p)
	r := bufio.NewReader(c)
	for _, line := range []string{"one", "two", strings.Repeat("x", 100000)} {
		got, err := roundTrip(c, r, line)
		if err != nil || got != "a:"+line {
			t.Fatalf("round trip %.10q: %.10q, %v", line, got, err)
		}
	}
	st := p.Stats()
	if st.Accepted != 1 || st.Active != 1 || st.BytesUp < 100008 || st.BytesDown < 100014 {
		t.Errorf("stats %+v", st)
	}
}

// A client that half-closes after its request still gets the answer: the proxy passes
// the half-close on instead of closing both ways.
func TestHalfClose(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "h:")
	p := newProxy(t, e.addr())
	c := dial(t, p)
	if _, err := io.WriteString(c, "last\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(c)
	if err != nil || string(all) != "h:last\n" {
		t.Fatalf("after half-close: %q, %v", all, err)
	}
	testutil.WaitFor(t, "the pair to end", func() bool { return p.Stats().Active == 0 })
}

func TestPartitionAndHeal(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "p:")
	p := newProxy(t, e.addr())
	live := dial(t, p)
	lr := bufio.NewReader(live)
	if got, err := roundTrip(live, lr, "before"); err != nil || got != "p:before" {
		t.Fatalf("before the partition: %q, %v", got, err)
	}

	if n := p.Partition(); n != 1 {
		t.Errorf("Partition closed %d connections, want 1", n)
	}
	if !p.Partitioned() {
		t.Error("Partitioned() false after Partition")
	}
	// The live connection is cut.
	if _, err := roundTrip(live, lr, "during"); err == nil {
		t.Error("a connection from before the partition still works")
	}
	// A new connection is accepted and held: what it sends does not reach the server.
	accepted := e.accepted.Load()
	held := dial(t, p)
	if _, err := io.WriteString(held, "late\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the new connection to be held", func() bool { return p.Stats().Held == 1 })
	if got := e.accepted.Load(); got != accepted {
		t.Errorf("the server accepted %d connections during the partition", got-accepted)
	}
	if n := p.Partition(); n != 0 { // idempotent
		t.Errorf("second Partition closed %d", n)
	}

	p.Heal()
	if p.Partitioned() {
		t.Error("Partitioned() true after Heal")
	}
	// The held connection goes through now, with what it sent during the partition.
	hr := bufio.NewReader(held)
	line, err := hr.ReadString('\n')
	if err != nil || line != "p:late\n" {
		t.Fatalf("held connection after Heal: %q, %v", line, err)
	}
	if got, err := roundTrip(held, hr, "after"); err != nil || got != "p:after" {
		t.Fatalf("held connection after Heal: %q, %v", got, err)
	}
	fresh := dial(t, p)
	if got, err := roundTrip(fresh, bufio.NewReader(fresh), "fresh"); err != nil || got != "p:fresh" {
		t.Fatalf("new connection after Heal: %q, %v", got, err)
	}
	p.Heal() // idempotent
	st := p.Stats()
	if st.Dropped != 1 || st.Held != 0 || st.Active != 2 || st.Accepted != 3 {
		t.Errorf("stats %+v", st)
	}
}

// A client that gives up during the partition (closes its held connection) is dropped at
// once; Heal does not deliver its stale data to the server.
func TestHeldClientGivesUp(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "g:")
	p := newProxy(t, e.addr())
	p.Partition()
	c := dial(t, p)
	if _, err := io.WriteString(c, "stale\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the connection to be held", func() bool { return p.Stats().Held == 1 })
	c.Close()
	testutil.WaitFor(t, "the given-up connection to be dropped", func() bool { return p.Stats().Held == 0 })
	p.Heal()
	// A fresh connection after Heal goes through: it is the first the server sees.
	fresh := dial(t, p)
	if got, err := roundTrip(fresh, bufio.NewReader(fresh), "new"); err != nil || got != "g:new" {
		t.Fatalf("after Heal: %q, %v", got, err)
	}
	if n := e.accepted.Load(); n != 1 {
		t.Errorf("the server accepted %d connections, want only the fresh one", n)
	}
}

// A held client that sends more than the proxy keeps is cut off.
func TestHeldClientFloods(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "f:")
	p := newProxy(t, e.addr())
	p.Partition()
	c := dial(t, p)
	go io.Copy(c, io.LimitReader(zeros{}, maxHeld+100000)) // ends with an error once cut
	if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
		t.Fatalf("read from a flooding held connection: %v", err)
	}
	testutil.WaitFor(t, "the flood to be dropped", func() bool { return p.Stats().Held == 0 })
	if n := e.accepted.Load(); n != 0 {
		t.Errorf("the server accepted %d connections", n)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

func TestDropAndSetTarget(t *testing.T) {
	t.Parallel()
	a, b := newEcho(t, "a:"), newEcho(t, "b:")
	p := newProxy(t, a.addr())
	c1 := dial(t, p)
	r1 := bufio.NewReader(c1)
	if got, err := roundTrip(c1, r1, "x"); err != nil || got != "a:x" {
		t.Fatalf("%q, %v", got, err)
	}
	if err := p.SetTarget(b.addr()); err != nil {
		t.Fatal(err)
	}
	// The live connection stays with the old target; a new one goes to the new target.
	if got, err := roundTrip(c1, r1, "y"); err != nil || got != "a:y" {
		t.Fatalf("live connection after SetTarget: %q, %v", got, err)
	}
	c2 := dial(t, p)
	if got, err := roundTrip(c2, bufio.NewReader(c2), "z"); err != nil || got != "b:z" {
		t.Fatalf("new connection after SetTarget: %q, %v", got, err)
	}
	if n := p.Drop(); n != 2 {
		t.Errorf("Drop closed %d, want 2", n)
	}
	if _, err := roundTrip(c1, r1, "gone"); err == nil {
		t.Error("a dropped connection still works")
	}
	if p.Partitioned() {
		t.Error("Drop partitioned the proxy")
	}
	c3 := dial(t, p)
	if got, err := roundTrip(c3, bufio.NewReader(c3), "w"); err != nil || got != "b:w" {
		t.Fatalf("new connection after Drop: %q, %v", got, err)
	}
}

// A target that is down closes the client's connection at once (like a refused
// connection one hop later) and is counted.
func TestTargetDown(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "d:")
	addr := e.addr()
	e.close()
	p := newProxy(t, addr)
	c := dial(t, p)
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("read from a proxied connection to a dead target: %v, want EOF or reset", err)
	}
	testutil.WaitFor(t, "the dial failure", func() bool { return p.Stats().DialFailures == 1 })
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "reset")
}

func TestBadTarget(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"", "127.0.0.1", "no port", "[::1"} {
		if p, err := Listen(target); err == nil {
			p.Close()
			t.Errorf("Listen(%q) succeeded", target)
		}
	}
	e := newEcho(t, "")
	p := newProxy(t, e.addr())
	if err := p.SetTarget("nonsense"); err == nil {
		t.Error("SetTarget(nonsense) succeeded")
	}
	if p.Target() != e.addr() {
		t.Errorf("a refused SetTarget changed the target to %q", p.Target())
	}
}

// Close ends every connection, forwarded or held, and returns only when the proxy's
// goroutines are gone; the methods stay safe afterwards.
func TestClose(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "c:")
	p, err := Listen(e.addr())
	if err != nil {
		t.Fatal(err)
	}
	live := dial(t, p)
	if got, err := roundTrip(live, bufio.NewReader(live), "x"); err != nil || got != "c:x" {
		t.Fatalf("%q, %v", got, err)
	}
	p.Partition()
	held := dial(t, p)
	testutil.WaitFor(t, "the held connection", func() bool { return p.Stats().Held == 1 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Error("a held connection survived Close")
	}
	if _, err := live.Read(make([]byte, 1)); err == nil {
		t.Error("a forwarded connection survived Close")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("the proxy still accepts after Close")
	}
	if n := p.Partition(); n != 0 {
		t.Errorf("Partition after Close: %d", n)
	}
	p.Heal()
	p.Drop()
	if st := p.Stats(); st.Active != 0 || st.Held != 0 {
		t.Errorf("stats after Close: %+v", st)
	}
}

// Many clients at once, with partitions and heals racing them: every client either
// completes its round trips or sees its connection cut, and nothing is left behind.
func TestConcurrentChurn(t *testing.T) {
	t.Parallel()
	e := newEcho(t, "r:")
	p := newProxy(t, e.addr())
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			for j := range 20 {
				line := strings.Repeat("z", i*j)
				got, err := roundTrip(c, r, line)
				if err != nil {
					return // cut by a partition or a drop
				}
				if got != "r:"+line {
					t.Errorf("got %.20q, want %.20q", got, "r:"+line)
					return
				}
			}
			ok.Add(1)
		}()
	}
	for range 5 {
		p.Partition()
		p.Heal()
		p.Drop()
	}
	wg.Wait()
	p.Heal()
	c := dial(t, p)
	if got, err := roundTrip(c, bufio.NewReader(c), "end"); err != nil || got != "r:end" {
		t.Fatalf("after churn: %q, %v", got, err)
	}
	t.Logf("%d of 20 clients finished untouched", ok.Load())
}
