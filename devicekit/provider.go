package devicekit

import (
	"errors"
	"net"
	"net/url"
	"strings"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/protocol"
)

// CredentialsProvider returns an aliyun-oss-go-sdk credentials provider backed by the
// kit's cache: the SDK asks it before every request, so a long multipart upload switches
// to renewed credentials midway. It also implements oss.CredentialsProviderE, which the
// SDK prefers, so that a failure to get credentials fails the request with the kit's error
// instead of sending it unsigned.
func (k *Kit) CredentialsProvider() oss.CredentialsProvider {
	return provider{k}
}

type provider struct{ k *Kit }

// GetCredentialsE returns the cached credentials, fetching new ones when needed.
func (p provider) GetCredentialsE() (oss.Credentials, error) {
	c, err := p.k.Credentials(p.k.ctx)
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

// bucketClient is an OSS bucket handle for one OSSInfo.
type bucketClient struct {
	info   protocol.OSSInfo
	bucket *oss.Bucket
}

// bucketFor returns the OSS bucket handle for info, reusing the last one when the info
// has not changed.
func (k *Kit) bucketFor(info protocol.OSSInfo) (*oss.Bucket, error) {
	k.ossMu.Lock()
	defer k.ossMu.Unlock()
	if k.bucket != nil && k.bucket.info == info {
		return k.bucket.bucket, nil
	}
	endpoint := info.Endpoint
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint // the SDK would default to plain http
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, errors.New("devicekit: the token worker sent an unusable OSS endpoint " + info.Endpoint)
	}
	client, err := oss.New(endpoint, "", "",
		oss.SetCredentialsProvider(k.CredentialsProvider()),
		oss.AuthVersion(oss.AuthV4),
		oss.Region(info.Region),
		// Virtual-host addressing needs DNS for {bucket}.{host}: not for IPs and localhost.
		oss.ForcePathStyle(pathStyleHost(u.Hostname())),
	)
	if err != nil {
		return nil, err
	}
	bucket, err := client.Bucket(info.Bucket)
	if err != nil {
		return nil, err
	}
	k.bucket = &bucketClient{info: info, bucket: bucket}
	return bucket, nil
}

func pathStyleHost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || net.ParseIP(host) != nil
}
