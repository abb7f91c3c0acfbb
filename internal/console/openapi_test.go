package console

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIRoutes: the OpenAPI document the console serves documents every API route
// it registers, with its method, and no route it does not have; public routes (no
// credential) are the ones whose operation says "security: []"; and each documented
// route is served (not the catch-all's 404, nor 405).
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *Config) { c.BrokerURL = "" }})
	a := e.api()
	status, body := a.do(http.MethodGet, "/api/openapi.json", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/openapi.json: %d %s", status, body)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
		Paths map[string]map[string]struct {
			Summary  string                 `json:"summary"`
			Security *[]map[string][]string `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Servers) != 1 || doc.Servers[0].URL != "/api" {
		t.Fatalf("document: openapi %q, servers %+v", doc.OpenAPI, doc.Servers)
	}
	documented := map[string]bool{} // "GET /api/clips" -> public
	for p, ops := range doc.Paths {
		for method, op := range ops {
			if op.Summary == "" {
				t.Errorf("%s %s has no summary", method, p)
			}
			documented[strings.ToUpper(method)+" /api"+p] = op.Security != nil && len(*op.Security) == 0
		}
	}
	var registered []string
	for _, rt := range e.console.apiRoutes() {
		key := rt.method + " " + rt.pattern
		registered = append(registered, key)
		public, ok := documented[key]
		switch {
		case !ok:
			t.Errorf("route %s is not in the OpenAPI document", key)
		case public != (rt.need == ""):
			t.Errorf("route %s: public %v in the document, %v in the console", key, public, rt.need == "")
		}
	}
	for key := range documented {
		if !slices.Contains(registered, key) {
			t.Errorf("the OpenAPI document has %s, which the console does not serve", key)
		}
	}
	// Each documented route is served: without a credential, a protected one answers
	// 401, a public one anything but "no such endpoint".
	for key, public := range documented {
		method, path, _ := strings.Cut(key, " ")
		path = strings.NewReplacer("{id}", "cam-01", "{name}", "alice").Replace(path)
		status, out := e.api().do(method, path, nil)
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed || (!public && status != http.StatusUnauthorized) {
			t.Errorf("%s (%s): %d %s", key, path, status, out)
		}
	}
	if len(registered) < 20 {
		t.Fatalf("only %d API routes", len(registered))
	}
}
