package clitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/internal/testutil"
)

// Buffer is a bytes.Buffer safe for the writes of a command's goroutines and the reads
// of the test.
type Buffer = testutil.SyncBuffer

// CheckJSONLog checks that every line of log is a JSON object whose keys are unique,
// and returns the lines decoded.
func CheckJSONLog(t testing.TB, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if line == "" {
			continue
		}
		keys, err := objectKeys([]byte(line))
		if err != nil {
			t.Errorf("log line %d is not a JSON object: %v\n%s", i+1, err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("log line %d repeats the key %q:\n%s", i+1, k, line)
			}
			seen[k] = true
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line %d: %v", i+1, err)
		}
		out = append(out, m)
	}
	return out
}

// objectKeys returns the top-level keys of a JSON object, repeated ones included.
func objectKeys(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want an object, got %v (%v)", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more after the object")
	}
	return keys, nil
}
