// Package ops is the operations endpoint every long-running clipgate command serves on
// its --metrics-addr: Prometheus metrics on /metrics, liveness on /healthz and readiness
// on /readyz.
//
// Each command builds its own Registry (NewRegistry), never the global one, so that two
// stacks in one test process do not collide. Components expose their counters as plain
// snapshots (Stats methods) or as Collectors of their own; the metrics are read at scrape
// time, so an idle process costs nothing. The library packages devicekit and events do
// not import Prometheus: their Stats snapshots are turned into metrics by the collectors
// of package internal/libmetrics.
//
// /healthz and /readyz answer the same JSON shape (Report): /healthz is 200 while the
// process serves; /readyz runs every Check (each bounded by CheckTimeout, all at once)
// and is 200 when every one passed, 503 otherwise.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clipgate/clipgate/internal/cli"
)

// Namespace is the prefix of every clipgate metric.
const Namespace = "clipgate"

// CheckTimeout bounds one readiness check.
const CheckTimeout = 3 * time.Second

// NewRegistry returns a registry with the Go runtime and process collectors and
// clipgate_build_info{command, version} for the command.
func NewRegistry(command string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   Namespace,
			Name:        "build_info",
			Help:        "Always 1; the labels say which command and build this is.",
			ConstLabels: prometheus.Labels{"command": command, "version": cli.Version(command)},
		}, func() float64 { return 1 }),
	)
	return reg
}

// Check is one dependency that /readyz checks.
type Check struct {
	// Name names the dependency in the report: "broker", "sts", "oss", "database".
	Name string
	// Run returns nil when the dependency is usable. It must return once ctx ends.
	Run func(ctx context.Context) error
}

// Report is the JSON body of /healthz and /readyz.
type Report struct {
	// Status is "ok" or "unavailable".
	Status string `json:"status"`
	// Service is the command's name.
	Service string `json:"service"`
	// Version is the command's version line (cli.Version).
	Version string `json:"version"`
	// Checks are the readiness checks, in name order (empty for /healthz).
	Checks []CheckResult `json:"checks"`
}

// CheckResult is the outcome of one Check.
type CheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "ok" or "fail"
	Error  string `json:"error,omitempty"`
}

// Report statuses.
const (
	StatusOK          = "ok"
	StatusUnavailable = "unavailable"
	StatusFail        = "fail"
)

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	service string
	reg     *prometheus.Registry
	checks  []Check
	mux     *http.ServeMux

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

// NewServer returns the operations endpoint of a command: its registry and the checks
// of /readyz. It does not listen; see Start, or use Handler.
func NewServer(service string, reg *prometheus.Registry, checks ...Check) *Server {
	s := &Server{service: service, reg: reg, checks: append([]Check(nil), checks...), mux: http.NewServeMux()}
	sort.SliceStable(s.checks, func(i, j int) bool { return s.checks[i].Name < s.checks[j].Name })
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		s.write(w, Report{Status: StatusOK, Checks: []CheckResult{}})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.write(w, s.Ready(r.Context()))
	})
	return s
}

// Handler returns the endpoint's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Ready runs every check at once and reports.
func (s *Server) Ready(ctx context.Context) Report {
	rep := Report{Status: StatusOK, Checks: make([]CheckResult, len(s.checks))}
	var wg sync.WaitGroup
	for i, c := range s.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			res := CheckResult{Name: c.Name, Status: StatusOK}
			if err := runCheck(cctx, c); err != nil {
				res.Status, res.Error = StatusFail, err.Error()
			}
			rep.Checks[i] = res
		})
	}
	wg.Wait()
	for _, c := range rep.Checks {
		if c.Status != StatusOK {
			rep.Status = StatusUnavailable
		}
	}
	return rep
}

// runCheck runs c, turning a panic into a failure: a broken check must not take the
// endpoint down.
func runCheck(ctx context.Context, c Check) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	return c.Run(ctx)
}

func (s *Server) write(w http.ResponseWriter, rep Report) {
	rep.Service, rep.Version = s.service, cli.Version(s.service)
	status := http.StatusOK
	if rep.Status != StatusOK {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rep)
}

// Start listens on addr ("host:port"; port 0 picks one) and serves until Close.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address: %w", err)
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	s.mu.Lock()
	s.ln, s.srv = ln, srv
	s.mu.Unlock()
	s.wg.Go(func() { _ = srv.Serve(ln) })
	return nil
}

// Addr returns the address Start listens on ("" before Start, and for a nil Server).
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops serving (requests in flight get a moment to finish). A nil Server is
// closed already.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	s.wg.Wait()
	return err
}

// Serve starts the endpoint of a command on addr, or returns nil when addr is empty (the
// endpoint is off). Close the returned server when the command ends (nil is fine).
func Serve(addr, service string, reg *prometheus.Registry, checks ...Check) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	s := NewServer(service, reg, checks...)
	if err := s.Start(addr); err != nil {
		return nil, err
	}
	return s, nil
}
