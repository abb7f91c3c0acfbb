package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"gopkg.in/yaml.v3"
)

// openAPIDoc is web/openapi.yaml as JSON, made once.
var openAPIDoc = sync.OnceValues(func() ([]byte, error) {
	text, err := webFiles.ReadFile("web/openapi.yaml")
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("web/openapi.yaml: %w", err)
	}
	doc, err = jsonable(doc)
	if err != nil {
		return nil, fmt.Errorf("web/openapi.yaml: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
})

// jsonable turns YAML's maps into JSON objects (string keys only).
func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			v[k] = j
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("a key %v that is not a string (quote it)", k)
			}
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[s] = j
		}
		return out, nil
	case []any:
		for i, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			v[i] = j
		}
	}
	return v, nil
}

// apiOpenAPI serves the OpenAPI document of the JSON API.
func (c *Console) apiOpenAPI(w http.ResponseWriter, _ *http.Request) {
	doc, err := openAPIDoc()
	if err != nil {
		c.apiError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}
