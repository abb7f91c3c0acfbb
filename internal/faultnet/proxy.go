// Package faultnet is a loopback TCP proxy for fault-injection tests: clients dial the
// proxy instead of a server, and the test cuts the network between them (Partition and
// Heal), drops live connections, or points the proxy at a server restarted on another
// port (SetTarget), while the clients keep the address they were given.
//
// It works below any protocol (MQTT, HTTP): bytes are copied unchanged in both
// directions, so TLS and signatures that cover the host name are unaffected.
package faultnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DialTimeout bounds the proxy's connection to its target.
const DialTimeout = 5 * time.Second

// ErrClosed is returned by the methods of a closed Proxy.
var ErrClosed = errors.New("faultnet: proxy closed")

// Proxy forwards TCP connections from its loopback address to a target address. Its
// methods are safe for concurrent use.
type Proxy struct {
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup

	mu          sync.Mutex
	target      string
	closed      bool
	partitioned bool
	healed      chan struct{}         // closed by Heal; replaced by Partition
	pairs       map[*pair]struct{}    // forwarded connections
	held        map[net.Conn]struct{} // connections accepted during a partition

	accepted, dialFailures, dropped atomic.Int64
	bytesUp, bytesDown              atomic.Int64
}

// pair is one forwarded connection: the client's and the proxy's to the target.
type pair struct {
	client, server net.Conn
	once           sync.Once
}

func (p *pair) close() {
	p.once.Do(func() {
		p.client.Close()
		p.server.Close()
	})
}

// Stats are a proxy's counters.
type Stats struct {
	Accepted     int64 // connections accepted from clients
	Active       int   // connections being forwarded now
	Held         int   // connections accepted during the partition, not forwarded
	Dropped      int64 // forwarded connections cut by Partition or Drop
	DialFailures int64 // connections closed because the target could not be reached
	BytesUp      int64 // client to target
	BytesDown    int64 // target to client
}

// Listen starts a proxy on 127.0.0.1 with a random port that forwards to target
// ("host:port"). Close stops it.
func Listen(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultnet: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: %w", err)
	}
	healed := make(chan struct{})
	close(healed)
	p := &Proxy{
		ln:     ln,
		done:   make(chan struct{}),
		target: target,
		healed: healed,
		pairs:  make(map[*pair]struct{}),
		held:   make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget makes new connections go to target ("host:port"); live ones stay where they
// are (a server that goes away closes them).
func (p *Proxy) SetTarget(target string) error {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return fmt.Errorf("faultnet: target %q: %w", target, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	return nil
}

// Partition cuts the network: every forwarded connection is closed at once, and new
// connections are accepted but get nothing through (a black hole: a client waits for
// its own timeout) until Heal. What they send is kept (up to 1 MiB each) for Heal. It
// returns how many connections it closed.
func (p *Proxy) Partition() int {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0
	}
	if !p.partitioned {
		p.partitioned = true
		p.healed = make(chan struct{})
	}
	pairs := p.takePairs()
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
	p.dropped.Add(int64(len(pairs)))
	return len(pairs)
}

// Heal ends a partition: connections held in the black hole are forwarded now (what the
// client sent meanwhile arrives late, as after TCP retransmissions), and new ones are
// forwarded as usual. A held connection its client gave up on (closed) during the
// partition is not forwarded: like a SYN lost in a real partition, the server never
// sees it.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partitioned {
		p.partitioned = false
		close(p.healed)
	}
}

// Partitioned reports whether the proxy is partitioned.
func (p *Proxy) Partitioned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.partitioned
}

// Drop closes every forwarded connection without partitioning (the clients reconnect at
// once); it returns how many it closed.
func (p *Proxy) Drop() int {
	p.mu.Lock()
	pairs := p.takePairs()
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
	p.dropped.Add(int64(len(pairs)))
	return len(pairs)
}

// takePairs empties the set of forwarded connections; p.mu is held.
func (p *Proxy) takePairs() []*pair {
	pairs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		pairs = append(pairs, pr)
		delete(p.pairs, pr)
	}
	return pairs
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active, held := len(p.pairs), len(p.held)
	p.mu.Unlock()
	return Stats{
		Accepted:     p.accepted.Load(),
		Active:       active,
		Held:         held,
		Dropped:      p.dropped.Load(),
		DialFailures: p.dialFailures.Load(),
		BytesUp:      p.bytesUp.Load(),
		BytesDown:    p.bytesDown.Load(),
	}
}

// Close stops the listener, closes every connection and waits for the proxy's
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	pairs := p.takePairs()
	held := make([]net.Conn, 0, len(p.held))
	for c := range p.held {
		held = append(held, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, pr := range pairs {
		pr.close()
	}
	for _, c := range held {
		c.Close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and go on, like net/http.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-p.done:
				return
			}
			continue
		}
		backoff = 0
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.handle(c)
	}
}

// maxHeld bounds what the proxy keeps of a held connection's data; a client that sends
// more during a partition is cut off.
const maxHeld = 1 << 20

// handle forwards one client connection, holding it while the proxy is partitioned.
func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	var pending []byte // sent by the client while it was held
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		if p.partitioned {
			healed := p.healed
			p.held[c] = struct{}{}
			p.mu.Unlock()
			data, alive := p.hold(c, healed, maxHeld-len(pending))
			p.mu.Lock()
			delete(p.held, c)
			p.mu.Unlock()
			if !alive {
				c.Close()
				return
			}
			pending = append(pending, data...)
			continue
		}
		target := p.target
		p.mu.Unlock()

		s, err := net.DialTimeout("tcp", target, DialTimeout)
		if err != nil {
			p.dialFailures.Add(1)
			c.Close()
			return
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed || p.partitioned { // cut while dialling: the client stays in the black hole
			p.mu.Unlock()
			s.Close()
			continue
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		if len(pending) > 0 {
			n, err := s.Write(pending)
			p.bytesUp.Add(int64(n))
			if err != nil {
				pr.close()
			}
			pending = nil
		}
		p.pipe(pr)
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
		return
	}
}

// hold keeps a client in the black hole until healed is closed or the proxy closes. It
// reads what the client sends meanwhile (at most limit bytes) and returns it, with
// alive false if the client went away (closed, reset, or sent too much) or the proxy
// closed: such a connection is dropped instead of being forwarded late.
func (p *Proxy) hold(c net.Conn, healed <-chan struct{}, limit int) (data []byte, alive bool) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-healed:
		case <-p.done:
		case <-stop:
			return
		}
		c.SetReadDeadline(time.Unix(1, 0)) // wakes the Read below
	}()
	defer func() {
		close(stop)
		wg.Wait()
		c.SetReadDeadline(time.Time{})
	}()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		data = append(data, buf[:n]...)
		switch {
		case len(data) > limit:
			return nil, false
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			select {
			case <-p.done:
				return nil, false
			default:
				return data, true
			}
		default:
			return nil, false
		}
	}
}

// pipe copies both ways until both directions end. A direction that ends cleanly (EOF)
// half-closes the other side, so that a request followed by a close still gets its
// answer; an error closes both connections.
func (p *Proxy) pipe(pr *pair) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.copy(pr, pr.server, pr.client, &p.bytesUp)
	}()
	go func() {
		defer wg.Done()
		p.copy(pr, pr.client, pr.server, &p.bytesDown)
	}()
	wg.Wait()
	pr.close()
}

func (p *Proxy) copy(pr *pair, dst, src net.Conn, counter *atomic.Int64) {
	_, err := io.CopyBuffer(countingWriter{dst, counter}, src, make([]byte, 32<<10))
	if err != nil {
		pr.close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	pr.close()
}

// countingWriter counts the bytes written as they go, so that Stats shows the traffic of
// live connections.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
