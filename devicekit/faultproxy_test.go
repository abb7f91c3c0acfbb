package devicekit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	out, err := http.NewRequest(r.Method, "http://"+p.target+r.RequestURI, r.Body)
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
