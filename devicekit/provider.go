package devicekit

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate"
)

// CredentialsProvider returns an aliyun-oss-go-sdk credentials provider backed by the
// kit's cache: the SDK asks it before every request, so a long multipart upload switches
// to renewed credentials midway. It also implements oss.CredentialsProviderE, which the
// SDK prefers, so that a failure to get credentials fails the request with the kit's error
// instead of sending it unsigned.
func (k *Kit) CredentialsProvider() oss.CredentialsProvider {
	return provider{k: k}
}

// provider serves the kit's credentials to the SDK. With ctx set it serves one upload and
// refuses once ctx ends: the SDK does not pass a context to the parts of a multipart
// upload, so this is how cancelling Upload stops it (at the next request).
type provider struct {
	k    *Kit
	ctx  context.Context
	mode clipgate.Mode // "" is Config.Mode
}

// GetCredentialsE returns the cached credentials, fetching new ones when needed.
func (p provider) GetCredentialsE() (oss.Credentials, error) {
	ctx := p.k.ctx
	if p.ctx != nil {
		if err := p.ctx.Err(); err != nil {
			return nil, err
		}
		ctx = p.ctx
	}
	c, err := p.k.credentials(ctx, p.mode)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// GetCredentials is GetCredentialsE for callers that cannot take an error: on failure it
// returns empty credentials, which OSS refuses.
func (p provider) GetCredentials() oss.Credentials {
	c, err := p.GetCredentialsE()
	if err != nil {
		p.k.log.Error().Err(err).Msg("no OSS credentials")
		return &Credentials{}
	}
	return c
}

// bucketFor returns an OSS bucket handle for info whose requests take credentials from
// the kit for as long as ctx lasts. Handles share the kit's HTTP connections.
func (k *Kit) bucketFor(ctx context.Context, info clipgate.OSSInfo) (*oss.Bucket, error) {
	return k.bucketForMode(ctx, info, "")
}

// bucketForMode is bucketFor with the credentials of mode ("" is Config.Mode).
func (k *Kit) bucketForMode(ctx context.Context, info clipgate.OSSInfo, mode clipgate.Mode) (*oss.Bucket, error) {
	endpoint := info.Endpoint
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint // the SDK would default to plain http
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("devicekit: the token worker sent an unusable OSS endpoint " + info.Endpoint)
	}
	client, err := oss.New(endpoint, "", "",
		oss.SetCredentialsProvider(provider{k: k, ctx: ctx, mode: mode}),
		oss.AuthVersion(oss.AuthV4),
		oss.Region(info.Region),
		// Virtual-host addressing needs DNS for {bucket}.{host}: not for IPs and localhost.
		oss.ForcePathStyle(pathStyleHost(u.Hostname())),
		oss.HTTPClient(k.http),
		// The SDK's default, stated: uploads take the CRC-64 of the bytes sent from the
		// SDK, which compares it with OSS's (prepared in upload.go).
		oss.EnableCRC(true),
	)
	if err != nil {
		return nil, err
	}
	return client.Bucket(info.Bucket)
}

func pathStyleHost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || net.ParseIP(host) != nil
}

// HTTP timeouts of OSS requests, as the SDK's defaults.
const (
	httpConnectTimeout   = 30 * time.Second
	httpReadWriteTimeout = 60 * time.Second // per read or write: a stalled transfer fails
	httpHeaderTimeout    = 60 * time.Second
	httpIdleTimeout      = 50 * time.Second
)

// newHTTPClient returns the OSS HTTP client: the SDK's transport settings (which it
// applies only to the clients it makes itself), no proxy from the environment.
func newHTTPClient(tlsConfig *tls.Config) (*http.Client, *http.Transport) {
	d := &net.Dialer{Timeout: httpConnectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &deadlineConn{Conn: c}, nil
		},
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       httpIdleTimeout,
		ResponseHeaderTimeout: httpHeaderTimeout,
		TLSHandshakeTimeout:   httpConnectTimeout,
	}
	return &http.Client{Transport: t}, t
}

// deadlineConn gives every read and write httpReadWriteTimeout to make progress.
type deadlineConn struct{ net.Conn }

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(httpReadWriteTimeout))
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(httpReadWriteTimeout))
	return c.Conn.Write(b)
}
