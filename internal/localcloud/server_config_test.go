package localcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/policyeval"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyDevDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{DataDir: dir}
	d, err := ApplyDevDefaults(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Key == nil || !d.KeyCreated || d.Role != DevRoleName || d.Bucket != DevBucket {
		t.Fatalf("defaults = %+v", d)
	}
	if !strings.HasPrefix(d.Key.ID, "LTAI") || len(d.Key.Secret) < 20 {
		t.Errorf("dev key %q", d.Key.ID)
	}
	st, err := os.Stat(filepath.Join(dir, DevKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("dev key file: %v %v", st, err)
	}
	a, err := NewAuthority(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := a.AssumeRole(d.Key.ID, a.RoleARN(DevRoleName), "dev", "", 12*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Resolve(cr.AccessKeyID, cr.SecurityToken, t0)
	if err != nil {
		t.Fatal(err)
	}
	put := &policyeval.Request{Action: "oss:PutObject", Resource: "acs:oss:*:*:" + DevBucket + "/a/b", CurrentTime: t0}
	other := &policyeval.Request{Action: "oss:PutObject", Resource: "acs:oss:*:*:elsewhere/a", CurrentTime: t0}
	if !policyeval.Authorize(put, p.Policies...) || policyeval.Authorize(other, p.Policies...) {
		t.Error("dev role should allow its bucket and only it")
	}

	// A restart reuses the key.
	again := Config{DataDir: dir}
	d2, err := ApplyDevDefaults(&again)
	if err != nil {
		t.Fatal(err)
	}
	if d2.KeyCreated || *d2.Key != *d.Key {
		t.Errorf("restart made a new key: %+v vs %+v", d2.Key, d.Key)
	}

	// Configured parts are kept.
	own := Config{DataDir: t.TempDir(), Buckets: []string{"mine"}, Keys: []AccessKey{{ID: "LTAIme", Secret: "me-secret-123"}}}
	d3, err := ApplyDevDefaults(&own)
	if err != nil {
		t.Fatal(err)
	}
	if d3.Key != nil || d3.Bucket != "" || d3.Role != DevRoleName || len(own.Keys) != 1 || own.Buckets[0] != "mine" {
		t.Errorf("configured parts changed: %+v %+v", d3, own)
	}
	if !strings.Contains(own.Roles[0].Policy, "acs:oss:*:*:mine/*") {
		t.Errorf("dev role policy %s does not name the configured bucket", own.Roles[0].Policy)
	}
	if _, err := os.Stat(filepath.Join(own.DataDir, DevKeyFile)); err == nil {
		t.Error("dev key written although keys were configured")
	}
}

func TestApplyDevDefaultsBadKeyFile(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		text string
		mode os.FileMode
	}{
		"not json":        {"{", 0o600},
		"bad id":          {`{"id":"a b","secret":"long-enough-secret"}`, 0o600},
		"short secret":    {`{"id":"LTAIx","secret":"s"}`, 0o600},
		"world readable":  {`{"id":"LTAIx","secret":"long-enough-secret"}`, 0o644},
		"unknown is fine": {`{"id":"LTAIx","secret":"long-enough-secret"}`, 0o600},
	} {
		dir := t.TempDir()
		p := writeFile(t, dir, DevKeyFile, c.text)
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
		cfg := Config{DataDir: dir}
		_, err := ApplyDevDefaults(&cfg)
		if name == "unknown is fine" {
			if err != nil || cfg.Keys[0].ID != "LTAIx" {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), DevKeyFile) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := ApplyDevDefaults(&Config{}); err == nil {
		t.Error("empty DataDir accepted")
	}
}
