package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// EMQXAdmin is EMQX 5's REST API (the dashboard listener, e.g. http://emqx:18083), with
// an API key (created in the dashboard or with `emqx ctl`), used to end a revoked
// device's session at once instead of at its next authorization check.
type EMQXAdmin struct {
	// URL is the API's base URL, without "/api/v5".
	URL string
	// APIKey and APISecret authenticate (HTTP basic authentication, as EMQX 5 documents).
	APIKey, APISecret string
	// Client sends the requests; nil means a client with a 10-second timeout.
	Client *http.Client
}

func (e *EMQXAdmin) check() error {
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("EMQX.URL %q: want http(s)://host:port", e.URL)
	}
	if e.APIKey == "" || e.APISecret == "" {
		return errors.New("EMQX.APIKey and EMQX.APISecret are required")
	}
	return nil
}

// kick clears the authorization cache of the client clientID, then kicks it out, through
// EMQX 5's REST API:
//
//	DELETE /api/v5/clients/{clientid}/authorization/cache   204
//	DELETE /api/v5/clients/{clientid}                       204
//
// (EMQX 5's REST API, Clients: the paths /clients/:clientid and
// /clients/:clientid/authorization/cache of emqx_mgmt_api_clients). 404 means
// the client is not connected, which is what a revocation wants. Clearing the cache
// first makes every check of a connection still open go to the authz endpoint again,
// which denies a revoked device; kicking it ends the connection, and its reconnection
// is refused by the authn endpoint.
func (e *EMQXAdmin) kick(ctx context.Context, clientID string) error {
	base := strings.TrimSuffix(e.URL, "/") + "/api/v5/clients/" + url.PathEscape(clientID)
	for _, u := range []string{base + "/authorization/cache", base} {
		if err := e.delete(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

func (e *EMQXAdmin) delete(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(e.APIKey, e.APISecret)
	hc := e.Client
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("EMQX: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK, http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("EMQX: DELETE %s: HTTP %d %s", u, resp.StatusCode, strings.TrimSpace(string(body)))
}
