package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ConnectedCheck is a check of an MQTT connection: connected reports whether it is up.
func ConnectedCheck(name string, connected func() bool) Check {
	return Check{Name: name, Run: func(context.Context) error {
		if !connected() {
			return errors.New("not connected")
		}
		return nil
	}}
}

// HTTPReachable is a check that endpoint (a URL, or host:port for https) answers HTTP at
// all (client nil: a client without keep-alive connections): any response, whatever its status, counts, since the check is about the network
// path and the server, not about credentials (a GET of the root of STS or OSS costs the
// caller nothing and changes nothing).
func HTTPReachable(name, endpoint string, client *http.Client) Check {
	target := endpoint
	if !strings.Contains(target, "://") {
		target = "https://" + target
	}
	if client == nil {
		// A fresh connection each time: the check is about reaching the server now, not
		// about a pooled connection to it.
		client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true}}
	}
	return Check{Name: name, Run: func(ctx context.Context) error {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return fmt.Errorf("endpoint %q is not a URL", endpoint)
		}
		u.Path, u.RawQuery = "/", ""
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.Body.Close()
	}}
}
