package localcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/policyeval"
)

const goodYAML = `
ossAddr: 127.0.0.1:0
stsAddr: 127.0.0.1:0
dataDir: data
region: cn-shanghai
endpointDomain: oss-cn-shanghai.example.test
accountId: "1234567890"
stsRate: 20
buckets: [clips, clips-archive]
keys:
  - id: LTAIworker
    secret: worker-secret-123
    policy:
      Version: "1"
      Statement:
        - Effect: Allow
          Action: sts:AssumeRole
          Resource: "*"
  - id: LTAIadmin
    secret: admin-secret-456
roles:
  - name: uploader
    maxSessionDuration: 2h
    policy: '{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:PutObject","Resource":"acs:oss:*:*:clips/*"}]}'
`

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := LoadConfigFile(writeFile(t, dir, "localcloud.yaml", goodYAML))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") {
		t.Errorf("DataDir = %q, want it relative to the file", cfg.DataDir)
	}
	if cfg.Region != "cn-shanghai" || cfg.EndpointDomain != "oss-cn-shanghai.example.test" || cfg.AccountID != "1234567890" || cfg.STSRate != 20 ||
		cfg.OSSAddr != "127.0.0.1:0" || len(cfg.Buckets) != 2 || cfg.Buckets[1] != "clips-archive" {
		t.Errorf("cfg = %+v", cfg)
	}
	if len(cfg.Keys) != 2 || cfg.Keys[0].Secret != "worker-secret-123" || cfg.Keys[1].Policy != "" {
		t.Fatalf("keys = %+v", cfg.Keys)
	}
	// A policy written as YAML becomes JSON that policyeval reads.
	doc, err := policyeval.Parse([]byte(cfg.Keys[0].Policy))
	if err != nil {
		t.Fatalf("key policy %q: %v", cfg.Keys[0].Policy, err)
	}
	if !policyeval.Authorize(&policyeval.Request{Action: "sts:AssumeRole", Resource: "acs:ram::1234567890:role/uploader"}, doc) {
		t.Error("YAML policy lost its statement")
	}
	if len(cfg.Roles) != 1 || cfg.Roles[0].MaxSessionDuration != 2*time.Hour {
		t.Fatalf("roles = %+v", cfg.Roles)
	}
	// The loaded configuration starts an authority.
	a, err := NewAuthority(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AssumeRole("LTAIworker", "acs:ram::1234567890:role/uploader", "cam-1", "", 2*time.Hour, t0); err != nil {
		t.Fatal(err)
	}

	abs := strings.Replace(goodYAML, "dataDir: data", "dataDir: "+filepath.Join(dir, "abs"), 1)
	cfg, err = LoadConfigFile(writeFile(t, dir, "abs.yaml", abs))
	if err != nil || cfg.DataDir != filepath.Join(dir, "abs") {
		t.Errorf("absolute dataDir: %q, %v", cfg.DataDir, err)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	edit := func(old, new string) string {
		if !strings.Contains(goodYAML, old) {
			t.Fatalf("test bug: %q not in goodYAML", old)
		}
		return strings.Replace(goodYAML, old, new, 1)
	}
	cases := map[string]struct{ text, want string }{
		"empty":               {"", "empty"},
		"only a comment":      {"# nothing\n", "empty"},
		"not yaml":            {"keys: [", "yaml"},
		"unknown field":       {goodYAML + "colour: blue\n", "colour"},
		"misspelt field":      {edit("stsRate", "stsrate"), "stsrate"},
		"wrong type":          {edit("stsRate: 20", "stsRate: fast"), "fast"},
		"two documents":       {goodYAML + "---\nregion: x\n", "more than one"},
		"bad bucket":          {edit("clips-archive", "Clips_Archive"), "Clips_Archive"},
		"duplicate bucket":    {edit("clips-archive", "clips"), "twice"},
		"address no port":     {edit("ossAddr: 127.0.0.1:0", "ossAddr: 127.0.0.1"), "ossAddr"},
		"account not digits":  {edit(`"1234567890"`, "acme"), "accountId"},
		"bad region":          {edit("cn-shanghai", "CN Shanghai"), "region"},
		"negative rate":       {edit("stsRate: 20", "stsRate: -1"), "negative"},
		"bad domain":          {edit("oss-cn-shanghai.example.test", "oss_cn.example.test"), "endpoint domain"},
		"empty label":         {edit("oss-cn-shanghai.example.test", "oss..test"), "endpoint domain"},
		"label dash":          {edit("oss-cn-shanghai.example.test", "-oss.test"), "endpoint domain"},
		"duplicate key":       {edit("LTAIadmin", "LTAIworker"), "twice"},
		"short secret":        {edit("admin-secret-456", "short"), "secret"},
		"reserved key prefix": {edit("LTAIadmin", "STS.admin"), "reserved"},
		"bad role policy":     {edit(`"Effect":"Allow"`, `"Effect":"Perhaps"`), "uploader"},
		"role without policy": {edit("    policy: '{", "    xpolicy: '{"), "xpolicy"},
		"session too long":    {edit("maxSessionDuration: 2h", "maxSessionDuration: 13h"), "12h"},
		"duration no unit":    {edit("maxSessionDuration: 2h", "maxSessionDuration: soon"), "soon"},
		"policy as a list":    {edit("    policy:\n      Version", "    policy:\n      - Version"), "policy"},
		"bad key policy":      {edit("Effect: Allow\n", "Effect: Allow\n          Colour: red\n"), "LTAIworker"},
	}
	for name, c := range cases {
		_, err := LoadConfigFile(writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
	if _, err := LoadConfigFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
	big := writeFile(t, dir, "big.yaml", "# "+strings.Repeat("x", maxConfigFileSize)+"\n")
	if _, err := LoadConfigFile(big); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized file: %v", err)
	}
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
