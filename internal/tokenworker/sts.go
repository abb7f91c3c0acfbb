package tokenworker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"

	"github.com/clipgate/clipgate/internal/protocol"
)

// stsPool hands out STS SDK clients, one per call in flight. The SDK client is not safe for
// concurrent use (every call rewrites its http.Client timeout), so each of the MaxConcurrent
// slots owns one client; taking a slot is also the concurrency bound. All clients share one
// HTTP transport, so that connections to STS are kept alive and reused by whichever slot
// calls next, instead of one connection (and one dial) per slot.
type stsPool struct {
	cfg       STSConfig
	transport stsTransport
	slots     chan *sts.Client // capacity MaxConcurrent; nil entries are created on first use
}

// stsTransport is the pool's shared transport. It is deliberately not an *http.Transport:
// the SDK rewrites an *http.Transport's dialer, TLS settings and proxy on every call (a data
// race once clients share it, and a regexp compiled per call for its no-proxy list), and
// leaves any other RoundTripper alone. Proxies come from the environment as net/http reads
// them (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), which never proxies loopback stand-ins.
type stsTransport struct{ t *http.Transport }

// RoundTrip implements http.RoundTripper.
func (s stsTransport) RoundTrip(r *http.Request) (*http.Response, error) { return s.t.RoundTrip(r) }

func newSTSPool(cfg STSConfig, size int) *stsPool {
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	p := &stsPool{
		cfg: cfg,
		transport: stsTransport{&http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         dialer.DialContext,
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: max(size, 2), // every slot's connection stays open between calls
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}},
		slots: make(chan *sts.Client, size),
	}
	for i := 0; i < size; i++ {
		p.slots <- nil
	}
	return p
}

// tryAcquire takes a slot without waiting; ok is false when every slot is in use.
func (p *stsPool) tryAcquire() (c *sts.Client, ok bool, err error) {
	select {
	case c = <-p.slots:
	default:
		return nil, false, nil
	}
	return p.ready(c)
}

// acquire takes a slot, waiting until ctx is done; ok is false when it is.
func (p *stsPool) acquire(ctx context.Context) (c *sts.Client, ok bool, err error) {
	select {
	case c = <-p.slots:
	case <-ctx.Done():
		return nil, false, nil
	}
	return p.ready(c)
}

// ready creates the client of a fresh slot.
func (p *stsPool) ready(c *sts.Client) (*sts.Client, bool, error) {
	if c != nil {
		return c, true, nil
	}
	c, err := p.newClient()
	if err != nil {
		p.slots <- nil
		return nil, false, err
	}
	return c, true, nil
}

func (p *stsPool) release(c *sts.Client) { p.slots <- c }

// close drops the idle connections to STS.
func (p *stsPool) close() { p.transport.t.CloseIdleConnections() }

// The SDK fills its package-level endpoint map lazily, without synchronization, on every
// client creation; filling it before any goroutine exists makes later calls read-only.
func init() { sts.GetEndpointMap() }

func (p *stsPool) newClient() (*sts.Client, error) {
	c, err := sts.NewClientWithAccessKey(p.cfg.Region, p.cfg.AccessKeyID, p.cfg.AccessKeySecret)
	if err != nil {
		return nil, err
	}
	c.SetTransport(p.transport)
	c.SetConnectTimeout(p.cfg.Timeout)
	c.SetReadTimeout(p.cfg.Timeout)
	return c, nil
}

// assumeRole makes one AssumeRole call with client c.
func (p *stsPool) assumeRole(c *sts.Client, sessionName, sessionPolicy string) (*protocol.Credentials, error) {
	req := sts.CreateAssumeRoleRequest()
	req.Scheme = p.cfg.Scheme
	req.Domain = p.cfg.Endpoint
	req.RegionId = p.cfg.Region
	req.RoleArn = p.cfg.RoleARN
	req.RoleSessionName = sessionName
	req.Policy = sessionPolicy
	req.DurationSeconds = requests.NewInteger(int(p.cfg.Duration / time.Second))
	req.SetConnectTimeout(p.cfg.Timeout)
	req.SetReadTimeout(p.cfg.Timeout)
	resp, err := c.AssumeRole(req)
	if err != nil {
		return nil, err
	}
	cr := resp.Credentials
	if cr.AccessKeyId == "" || cr.AccessKeySecret == "" || cr.SecurityToken == "" {
		return nil, errMalformedSTS
	}
	exp, err := time.Parse(time.RFC3339, cr.Expiration)
	if err != nil {
		return nil, errMalformedSTS
	}
	return &protocol.Credentials{
		AccessKeyID:     cr.AccessKeyId,
		AccessKeySecret: cr.AccessKeySecret,
		SecurityToken:   cr.SecurityToken,
		Expiration:      exp.UTC(),
	}, nil
}

var errMalformedSTS = errors.New("STS answered without complete credentials or a valid expiration")

// stsOutcome is what the device is told about a failed AssumeRole call.
type stsOutcome struct {
	code       protocol.Code
	retryAfter time.Duration
	message    string
}

// Retry hints for STS failures.
const (
	retryThrottled   = 2 * time.Second
	retryUnavailable = 5 * time.Second
	retryMisconfig   = 60 * time.Second
)

// classifySTSError maps an AssumeRole failure to a reply code.
//
// Throttling, 5xx answers, timeouts and network errors are transient: `unavailable`, retry
// soon. Errors that come from the worker's own configuration (unknown role, NoPermission,
// a bad access key or signature, a policy STS refuses) are the same for every device, so they
// are `internal` with a long retry: the device cannot fix them, must not give up for good, and
// recovers once an operator fixes the worker. Only a refusal of this device's own session
// name (InvalidParameter.RoleSessionName) is `denied`.
func classifySTSError(err error) stsOutcome {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		switch {
		case strings.HasPrefix(code, "Throttling"):
			return stsOutcome{protocol.CodeUnavailable, retryThrottled, "the token service is throttled; retry later"}
		case se.HttpStatus() >= 500 || code == "ServiceUnavailable" || code == "InternalError":
			return stsOutcome{protocol.CodeUnavailable, retryUnavailable, "the token service is unavailable; retry later"}
		case code == "InvalidParameter.RoleSessionName":
			return stsOutcome{protocol.CodeDenied, 0, "the token service refuses this device ID as a session name"}
		default:
			return stsOutcome{protocol.CodeInternal, retryMisconfig, "the token worker is misconfigured; retry later"}
		}
	}
	if errors.Is(err, errMalformedSTS) {
		return stsOutcome{protocol.CodeUnavailable, retryUnavailable, "the token service answered badly; retry later"}
	}
	// Client-side errors: timeouts, refused connections, DNS, unreadable responses.
	return stsOutcome{protocol.CodeUnavailable, retryUnavailable, "the token service cannot be reached; retry later"}
}

// stsErrorCode is the STS error code of err for logs, or "" for a non-server error.
func stsErrorCode(err error) string {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	var ce *sdkerrors.ClientError
	if errors.As(err, &ce) {
		return ce.ErrorCode()
	}
	return ""
}
