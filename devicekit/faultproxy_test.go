package devicekit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// faultProxy is an HTTP proxy in front of the local OSS endpoint that the test tells to
// lose requests or responses: the kit gets it as its OSS endpoint from the token worker.
type faultProxy struct {
	*httptest.Server
	target string // host:port of the local OSS
	tr     *http.Transport

	mu     sync.Mutex
	faults []*fault
	ops    map[string]int      // requests seen, by operation
	forbid map[string]int      // requests with x-oss-forbid-overwrite: true, by operation
	paths  map[string][]string // unescaped URL paths of the requests, by operation
}

type faultAction int

const (
	// dropResponse forwards the request, lets OSS complete it, then cuts the connection
	// without answering: the client cannot tell whether it landed.
	dropResponse faultAction = iota + 1
	// dropRequest cuts the connection without forwarding the request.
	dropRequest
	// corruptBody flips the bits of the request body's first byte on the way to OSS, which
	// stores what it got and reports its CRC-64.
	corruptBody
	// wrongCRC adds one to the CRC-64 that OSS reports in its answer.
	wrongCRC
	// cutBody answers with OSS's status and headers and half the body, then cuts the
	// connection.
	cutBody
)

// fault injects action into the requests of operation op: it lets skip of them through,
// then hits the next count.
type fault struct {
	op          string
	action      faultAction
	skip, count int
	hits        int
}

func newFaultProxy(t *testing.T, ossEndpoint string) *faultProxy {
	t.Helper()
	u, err := url.Parse(ossEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{target: u.Host, tr: &http.Transport{}, ops: map[string]int{}, forbid: map[string]int{}, paths: map[string][]string{}}
	p.Server = httptest.NewServer(p)
	t.Cleanup(func() {
		p.Server.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// opOf names the OSS operation of r.
func opOf(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("append"):
		return "append"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "initiate"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "complete"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "part"
	case r.Method == http.MethodPut:
		return "put"
	case r.Method == http.MethodHead:
		return "head"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "abort"
	}
	return r.Method
}

func (p *faultProxy) inject(f *fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f)
}

// count returns how many requests of op the proxy saw.
func (p *faultProxy) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ops[op]
}

// hits returns how many times f was injected.
func (p *faultProxy) hits(f *fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f.hits
}

// forbidden returns how many requests of op carried x-oss-forbid-overwrite: true.
func (p *faultProxy) forbidden(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forbid[op]
}

// pathsOf returns the URL paths of the requests of op, in order.
func (p *faultProxy) pathsOf(op string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.paths[op]...)
}

func (p *faultProxy) take(r *http.Request) faultAction {
	op := opOf(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ops[op]++
	p.paths[op] = append(p.paths[op], r.URL.Path)
	if r.Header.Get("x-oss-forbid-overwrite") == "true" {
		p.forbid[op]++
	}
	for _, f := range p.faults {
		if f.op != op || f.hits >= f.count {
			continue
		}
		if f.skip > 0 {
			f.skip--
			continue
		}
		f.hits++
		return f.action
	}
	return 0
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action := p.take(r)
	if action == dropRequest {
		io.Copy(io.Discard, r.Body)
		hangUp(w)
		return
	}
	body := io.Reader(r.Body)
	if action == corruptBody {
		body = io.MultiReader(&flipFirst{r: r.Body}, r.Body)
	}
	out, err := http.NewRequest(r.Method, "http://"+p.target+r.RequestURI, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	out.ContentLength = r.ContentLength
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if action == dropResponse {
		io.Copy(io.Discard, resp.Body)
		hangUp(w)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if v := resp.Header.Get("x-oss-hash-crc64ecma"); action == wrongCRC && v != "" {
		crc, _ := strconv.ParseUint(v, 10, 64)
		w.Header().Set("x-oss-hash-crc64ecma", strconv.FormatUint(crc+1, 10))
	}
	w.WriteHeader(resp.StatusCode)
	if action == cutBody {
		io.CopyN(w, resp.Body, resp.ContentLength/2)
		hangUp(w) // flushes what was written, then closes
		return
	}
	io.Copy(w, resp.Body)
}

// hangUp closes the client's connection without a response.
func hangUp(w http.ResponseWriter) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	c.Close()
}

// flipFirst reads the first byte of r with its bits flipped, then stops (the rest of r
// follows it in a MultiReader).
type flipFirst struct {
	r    io.Reader
	done bool
}

func (f *flipFirst) Read(b []byte) (int, error) {
	if f.done || len(b) == 0 {
		return 0, io.EOF
	}
	f.done = true
	n, err := io.ReadFull(f.r, b[:1])
	if n == 1 {
		b[0] ^= 0xff
		return 1, nil
	}
	return 0, err
}

// mqttProxy is a TCP proxy in front of the broker that reads the MQTT packets passing
// through it and cuts the connection at one of them (mqttCut): the kit gets it as its
// broker URL. Once cut, it refuses new connections while down is set.
type mqttProxy struct {
	ln     net.Listener
	target string // host:port of the broker
	topic  string // the event topic whose PUBLISH the cut concerns

	mu       sync.Mutex
	cut      mqttCut
	stayDown bool   // whether the proxy goes down at the cut
	down     bool   // refusing connections
	pid      []byte // packet ID of the event PUBLISH in flight, for cutPuback
	conns    map[net.Conn]bool
	cuts     chan struct{} // one value per cut made
}

type mqttCut int

const (
	// cutPublish cuts the connection when the device sends the PUBLISH of an event,
	// before it reaches the broker: the broker never gets it.
	cutPublish mqttCut = iota + 1
	// cutPuback forwards the event's PUBLISH, then cuts the connection when the broker's
	// PUBACK for it comes back: the broker has the event, the device does not know.
	cutPuback
)

// newMQTTProxy starts a proxy to the broker at target that makes cut once, on the first
// PUBLISH to topic; with stayDown it refuses connections from then on.
func newMQTTProxy(t *testing.T, target, topic string, cut mqttCut, stayDown bool) *mqttProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &mqttProxy{ln: ln, target: target, topic: topic, cut: cut, stayDown: stayDown,
		conns: map[net.Conn]bool{}, cuts: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c)
			}()
		}
	}()
	return p
}

// URL is the broker URL of the proxy.
func (p *mqttProxy) URL() string { return "tcp://" + p.ln.Addr().String() }

// serve pipes c to the broker and back, packet by packet, until either side closes or
// the cut.
func (p *mqttProxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c] = true
	p.mu.Unlock()
	b, err := net.Dial("tcp", p.target)
	p.mu.Lock()
	if err == nil {
		p.conns[b] = true
	}
	p.mu.Unlock()
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		if b != nil {
			delete(p.conns, b)
		}
		p.mu.Unlock()
	}()
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(b, c, false)
		c.Close()
	}()
	p.pipe(c, b, true)
	b.Close()
	<-done
}

// pipe copies MQTT packets from src to dst (up: from the device to the broker) until an
// error or the cut.
func (p *mqttProxy) pipe(src, dst net.Conn, up bool) {
	r := bufio.NewReader(src)
	for {
		pkt, body, err := readMQTTPacket(r)
		if err != nil || p.cutAt(pkt[0], body, up) {
			return
		}
		if _, err := dst.Write(pkt); err != nil {
			return
		}
	}
}

// cutAt reports whether the packet (first byte h, body after the fixed header) is where
// the connection is cut.
func (p *mqttProxy) cutAt(h byte, body []byte, up bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cut == 0:
		return false
	case up && h>>4 == 3 && (h>>1)&3 == 1 && len(body) >= 2: // a QoS 1 PUBLISH
		n := int(body[0])<<8 | int(body[1])
		if len(body) < 4+n || string(body[2:2+n]) != p.topic {
			return false
		}
		if p.cut == cutPuback {
			p.pid = slices.Clone(body[2+n : 4+n])
			return false
		}
	case !up && h == 0x40 && p.pid != nil && slices.Equal(body, p.pid): // its PUBACK
	default:
		return false
	}
	p.cut, p.down = 0, p.stayDown
	p.cuts <- struct{}{}
	return true
}

// readMQTTPacket reads one MQTT control packet: all its bytes, and its body after the
// fixed header.
func readMQTTPacket(r *bufio.Reader) (pkt, body []byte, err error) {
	h, err := r.ReadByte()
	if err != nil {
		return nil, nil, err
	}
	pkt = []byte{h}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return nil, nil, err
		}
		pkt = append(pkt, b)
		n += int(b&127) * mult
		mult *= 128
		if b&128 == 0 {
			break
		}
		if i == 3 {
			return nil, nil, errors.New("malformed remaining length")
		}
	}
	start := len(pkt)
	pkt = append(pkt, make([]byte, n)...)
	if _, err := io.ReadFull(r, pkt[start:]); err != nil {
		return nil, nil, err
	}
	return pkt, pkt[start:], nil
}
