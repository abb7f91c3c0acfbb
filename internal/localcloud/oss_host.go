package localcloud

import (
	"net"
	"strings"
)

// DefaultEndpointDomain is the default Config.EndpointDomain: a client given the endpoint
// http://localhost:PORT addresses bucket b as the host b.localhost, which browsers and many
// resolvers send to the loopback address.
const DefaultEndpointDomain = "localhost"

// bucketAndPath splits a request's target into the bucket and the escaped rest of the path,
// for both of OSS's addressing styles: virtual-hosted, the bucket in the Host header as
// bucket.domain[:port] (OSS's default, what a client set up for Alibaba sends), and path
// style, /bucket/key, for any other Host (an IP address, or the domain itself). The path is
// the escaped path, starting with "/".
func bucketAndPath(host, domain, path string) (bucket, rawKey string) {
	if domain != "" {
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if b, ok := strings.CutSuffix(h, "."+domain); ok && b != "" {
			return b, path[1:]
		}
	}
	bucket, rawKey, _ = strings.Cut(path[1:], "/")
	return bucket, rawKey
}
