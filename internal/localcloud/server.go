package localcloud

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Server timeouts. There is deliberately no read or write timeout on OSS: a 256 MiB
// object streams for as long as the disk needs; idle and header timeouts still bound
// slow or stuck clients.
const (
	serverReadHeaderTimeout = 10 * time.Second
	serverIdleTimeout       = 2 * time.Minute
	stsReadTimeout          = 30 * time.Second
	stsWriteTimeout         = 30 * time.Second
	ossMaxHeaderBytes       = 1 << 20
	stsMaxHeaderBytes       = 64 << 10 // a 2048-character policy in the query fits
	shutdownGrace           = 10 * time.Second
)

// Server runs the local OSS and STS HTTP servers. Close stops both.
type Server struct {
	cfg    Config
	auth   *Authority
	oss    *ossService
	ossSrv *http.Server
	stsSrv *http.Server
	ossLn  net.Listener
	stsLn  net.Listener
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start applies the defaults to cfg, opens the data directory, listens on cfg.OSSAddr and
// cfg.STSAddr, and serves both until Close.
func Start(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c.metrics = newCloudMetrics()
	auth, err := NewAuthority(&c)
	if err != nil {
		return nil, err
	}
	oss, err := newOSS(&c, auth)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: c, auth: auth, oss: oss}
	if s.ossLn, err = net.Listen("tcp", c.OSSAddr); err != nil {
		_ = oss.Close()
		return nil, fmt.Errorf("localcloud: OSS listener: %w", err)
	}
	if s.stsLn, err = net.Listen("tcp", c.STSAddr); err != nil {
		_ = s.ossLn.Close()
		_ = oss.Close()
		return nil, fmt.Errorf("localcloud: STS listener: %w", err)
	}
	s.ossSrv = &http.Server{
		Handler:           oss,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    ossMaxHeaderBytes,
		ErrorLog:          httpErrorLog(c.Logger, "oss"),
	}
	s.stsSrv = &http.Server{
		Handler:           newSTS(&c, auth),
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       stsReadTimeout,
		WriteTimeout:      stsWriteTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    stsMaxHeaderBytes,
		ErrorLog:          httpErrorLog(c.Logger, "sts"),
	}
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.ossSrv, s.ossLn}, {s.stsSrv, s.stsLn}} {
		s.wg.Go(func() {
			if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.Logger.Error().Err(err).Str("addr", p.ln.Addr().String()).Msg("localcloud server stopped")
			}
		})
	}
	c.Logger.Info().Str("oss", s.OSSEndpoint()).Str("sts", s.STSEndpoint()).
		Str("region", c.Region).Strs("buckets", c.Buckets).Msg("localcloud started")
	return s, nil
}

// OSSEndpoint is the OSS endpoint for the OSS SDKs: "http://127.0.0.1:PORT".
func (s *Server) OSSEndpoint() string { return "http://" + loopbackHostPort(s.ossLn.Addr()) }

// STSEndpoint is the STS address for the STS SDK's Domain: "127.0.0.1:PORT" (plain HTTP).
func (s *Server) STSEndpoint() string { return loopbackHostPort(s.stsLn.Addr()) }

// Authority returns the credential authority, to issue or check credentials in-process.
func (s *Server) Authority() *Authority { return s.auth }

// EndpointDomain is the domain under which buckets are virtual hosts ("" when off).
func (s *Server) EndpointDomain() string { return s.cfg.EndpointDomain }

// Region is the region the servers claim to be in.
func (s *Server) Region() string { return s.cfg.Region }

// RoleARN returns the ARN of a configured role, as AssumeRole expects it.
func (s *Server) RoleARN(role string) string { return s.auth.RoleARN(role) }

// Close stops accepting requests, lets requests in flight finish (for up to 10 s, then cuts
// them off), and closes the object store. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, srv := range []*http.Server{s.ossSrv, s.stsSrv} {
			wg.Go(func() {
				if err := srv.Shutdown(ctx); err != nil {
					_ = srv.Close()
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		s.wg.Wait()
		errs = append(errs, s.oss.Close())
		s.closeErr = errors.Join(errs...)
		s.cfg.Logger.Info().Msg("localcloud stopped")
	})
	return s.closeErr
}

// loopbackHostPort prints a listener address as a client should dial it: an unspecified
// address (0.0.0.0, ::) becomes 127.0.0.1.
func loopbackHostPort(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() { // Go listens dual-stack on "::", so IPv4 loopback works
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// httpErrorLog sends net/http's own errors (TLS garbage, header overflows) to zerolog.
func httpErrorLog(l zerolog.Logger, service string) *log.Logger {
	return log.New(l.With().Str("service", service).Str("level", "warn").Logger(), "", 0)
}
