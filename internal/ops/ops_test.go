package ops_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/ops/opstest"
)

// TestServeOff: an empty address turns the endpoint off, and a nil Server is closed.
func TestServeOff(t *testing.T) {
	t.Parallel()
	s, err := ops.Serve("", "x", ops.NewRegistry("x"))
	if err != nil || s != nil || s.Addr() != "" || s.Close() != nil {
		t.Fatalf("Serve(\"\") = %v, %v", s, err)
	}
	if _, err := ops.Serve("not an address", "x", ops.NewRegistry("x")); err == nil {
		t.Fatal("a bad address was accepted")
	}
}

// TestEndpoint: /metrics is the text format with the build and process metrics; /healthz
// and /readyz without checks are 200 with the report; other paths and methods are refused.
func TestEndpoint(t *testing.T) {
	t.Parallel()
	s, err := ops.Serve("127.0.0.1:0", "broker", ops.NewRegistry("broker"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := opstest.Scrape(t, s.Addr())
	if len(m) < 10 || !m.Has("go_goroutines") {
		t.Fatalf("scrape: %d series", len(m))
	}
	found := false
	for series, v := range m {
		if strings.HasPrefix(series, `clipgate_build_info{command="broker",version="broker `) && v == 1 {
			found = true
		}
	}
	if !found {
		t.Error("no clipgate_build_info for the command")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		status, rep := opstest.Health(t, s.Addr(), path)
		if status != http.StatusOK || rep.Status != ops.StatusOK || rep.Service != "broker" || !strings.HasPrefix(rep.Version, "broker ") || rep.Checks == nil {
			t.Errorf("%s: %d %+v", path, status, rep)
		}
	}
	for _, req := range [][2]string{{"GET", "/"}, {"POST", "/metrics"}, {"DELETE", "/readyz"}} {
		r, _ := http.NewRequest(req[0], "http://"+s.Addr()+req[1], nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s %s: %d", req[0], req[1], resp.StatusCode)
		}
	}
}

// TestHTTPReachable: any HTTP answer counts as reachable; no server, or no URL, does not.
func TestHTTPReachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "denied", http.StatusForbidden)
	}))
	defer srv.Close()
	if err := ops.HTTPReachable("x", srv.URL, nil).Run(context.Background()); err != nil {
		t.Errorf("a 403 is reachable: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, endpoint := range []string{"http://" + closed, "http://", "::"} {
		if err := ops.HTTPReachable("x", endpoint, nil).Run(context.Background()); err == nil {
			t.Errorf("%q counted as reachable", endpoint)
		}
	}
}
