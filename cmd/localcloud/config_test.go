package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/policyeval"
)

// parseConfig parses a command line and returns the servers' configuration.
func parseConfig(t *testing.T, env map[string]string, args ...string) (localcloud.Config, error) {
	t.Helper()
	var c CLI
	_, err := cli.Parse(spec, &c, cli.IO{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}, args)
	if err != nil {
		return localcloud.Config{}, err
	}
	return c.config()
}

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// oldYAML is a configuration file in the format localcloud read before its settings
// became flags: camelCase keys, secrets and policies inline.
const oldYAML = `
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
    user: admin
roles:
  - name: uploader
    maxSessionDuration: 2h
    policy: '{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:PutObject","Resource":"acs:oss:*:*:clips/*"}]}'
    trust:
      Version: "1"
      Statement:
        - {Effect: Allow, Action: sts:AssumeRole, Principal: {RAM: ["acs:ram::1234567890:user/admin"]}}
`

// TestOldConfigFile: a file in the old format still works.
func TestOldConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := parseConfig(t, nil, "--config", write(t, dir, "localcloud.yaml", oldYAML))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") {
		t.Errorf("DataDir = %q, want it relative to the file", cfg.DataDir)
	}
	if cfg.Region != "cn-shanghai" || cfg.EndpointDomain != "oss-cn-shanghai.example.test" || cfg.AccountID != "1234567890" || cfg.STSRate != 20 ||
		cfg.OSSAddr != "127.0.0.1:0" || !slices.Equal(cfg.Buckets, []string{"clips", "clips-archive"}) {
		t.Errorf("cfg = %+v", cfg)
	}
	if len(cfg.Keys) != 2 || cfg.Keys[0].Secret != "worker-secret-123" || cfg.Keys[1].Policy != "" || cfg.Keys[1].User != "admin" {
		t.Fatalf("keys = %+v", cfg.Keys)
	}
	// A policy written as YAML becomes JSON that the policy package reads.
	doc, err := policyeval.Parse([]byte(cfg.Keys[0].Policy))
	if err != nil {
		t.Fatalf("key policy %q: %v", cfg.Keys[0].Policy, err)
	}
	if !policyeval.Authorize(&policyeval.Request{Action: "sts:AssumeRole", Resource: "acs:ram::1234567890:role/uploader"}, doc) {
		t.Error("YAML policy lost its statement")
	}
	if len(cfg.Roles) != 1 || cfg.Roles[0].MaxSessionDuration != 2*time.Hour || !strings.Contains(cfg.Roles[0].Trust, "user/admin") {
		t.Fatalf("roles = %+v", cfg.Roles)
	}
	// The configuration works: the worker key assumes the role.
	a, err := localcloud.NewAuthority(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AssumeRole("LTAIadmin", a.RoleARN("uploader"), "cam-1", "", 2*time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	abs := strings.Replace(oldYAML, "dataDir: data", "dataDir: "+filepath.Join(dir, "abs"), 1)
	if cfg, err = parseConfig(t, nil, "--config", write(t, dir, "abs.yaml", abs)); err != nil || cfg.DataDir != filepath.Join(dir, "abs") {
		t.Errorf("absolute dataDir: %q, %v", cfg.DataDir, err)
	}
	// Flags win over the file.
	if cfg, err = parseConfig(t, nil, "--config", write(t, dir, "f.yaml", oldYAML), "--buckets", "other", "--region", "cn-beijing"); err != nil ||
		!slices.Equal(cfg.Buckets, []string{"other"}) || cfg.Region != "cn-beijing" {
		t.Errorf("flags over the file: %+v, %v", cfg, err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	edit := func(old, new string) string {
		if !strings.Contains(oldYAML, old) {
			t.Fatalf("test bug: %q not in oldYAML", old)
		}
		return strings.Replace(oldYAML, old, new, 1)
	}
	cases := map[string]struct{ text, want string }{
		"not yaml":            {"keys: [", "yaml"},
		"unknown field":       {oldYAML + "colour: blue\n", "colour"},
		"misspelt field":      {edit("stsRate", "stsrat"), "stsrat"},
		"wrong type":          {edit("stsRate: 20", "stsRate: fast"), "fast"},
		"two documents":       {oldYAML + "---\nregion: x\n", "more than one"},
		"bad bucket":          {edit("clips-archive", "Clips_Archive"), "Clips_Archive"},
		"duplicate bucket":    {edit("clips-archive", "clips"), "twice"},
		"address no port":     {edit("ossAddr: 127.0.0.1:0", "ossAddr: 127.0.0.1"), "ossAddr"},
		"account not digits":  {edit(`"1234567890"`, "acme"), "accountId"},
		"bad region":          {edit("cn-shanghai", "CN Shanghai"), "region"},
		"negative rate":       {edit("stsRate: 20", "stsRate: -1"), "negative"},
		"bad domain":          {edit("oss-cn-shanghai.example.test", "oss_cn.example.test"), "endpoint domain"},
		"duplicate key":       {edit("LTAIadmin", "LTAIworker"), "twice"},
		"short secret":        {edit("admin-secret-456", "short"), "secret"},
		"reserved key prefix": {edit("LTAIadmin", "STS.admin"), "reserved"},
		"bad role policy":     {edit(`"Effect":"Allow"`, `"Effect":"Perhaps"`), "uploader"},
		"role without policy": {edit("    policy: '{", "    xpolicy: '{"), "xpolicy"},
		"session too long":    {edit("maxSessionDuration: 2h", "maxSessionDuration: 13h"), "12h"},
		"duration no unit":    {edit("maxSessionDuration: 2h", "maxSessionDuration: soon"), "soon"},
		"policy as a list":    {edit("    policy:\n      Version", "    policy:\n      - Version"), "policy"},
		"bad key policy":      {edit("Effect: Allow\n", "Effect: Allow\n          Colour: red\n"), "LTAIworker"},
		"keys not a list":     {edit("keys:\n  - id: LTAIworker", "keys:\n  id: LTAIworker"), "keys"},
		"unknown key field":   {edit("    user: admin", "    usr: admin"), `unknown field "usr"`},
		"bad user name":       {edit("user: admin", "user: 'a b'"), "user"},
		"no secret":           {edit("    secret: admin-secret-456\n", ""), "no secret"},
		"secret twice":        {edit("    secret: admin-secret-456\n", "    secret: admin-secret-456\n    secret-file: s\n"), "not both"},
		"missing secret file": {edit("    secret: admin-secret-456\n", "    secret-file: none\n"), "no such file"},
		"missing policy file": {edit("    user: admin", "    policy-file: none.json"), "no such file"},
		"key without id":      {edit("  - id: LTAIadmin\n    secret:", "  - secret:"), "without an id"},
		"bad trust":           {edit("sts:AssumeRole, Principal", "sts:AssumeRole, Resource: '*', Principal"), "trust"},
		"text entry":          {edit("keys:\n  - id: LTAIworker", "keys:\n  - LTAIx,secret=abc\n  - id: LTAIworker"), "secret-file=FILE"},
		"list in a list":      {edit("keys:\n  - id: LTAIworker", "keys:\n  - [a]\n  - id: LTAIworker"), "mapping or text"},
	}
	for name, c := range cases {
		path := write(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", c.text)
		_, err := parseConfig(t, nil, "--config", path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}

// TestKeyAndRoleFlags: --keys and --roles take entries with their secrets and policies in
// files, from the command line or the variables, and refuse anything else.
func TestKeyAndRoleFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := write(t, dir, "worker.secret", "worker-secret-0123\n")
	pol := write(t, dir, "assume.json", `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`)
	rolePol := write(t, dir, "role.json", `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"*"}]}`)
	cfg, err := parseConfig(t, nil, "--data-dir", dir,
		"--keys", "LTAIworker,secret-file="+secret+",policy-file="+pol+",user=worker",
		"--roles", "dev,policy-file="+rolePol+",max-session-duration=3h")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 1 || cfg.Keys[0] != (localcloud.AccessKey{ID: "LTAIworker", Secret: "worker-secret-0123", User: "worker", Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`}) {
		t.Errorf("keys %+v", cfg.Keys)
	}
	if len(cfg.Roles) != 1 || cfg.Roles[0].Name != "dev" || cfg.Roles[0].MaxSessionDuration != 3*time.Hour || !strings.Contains(cfg.Roles[0].Policy, "oss:*") {
		t.Errorf("roles %+v", cfg.Roles)
	}
	// Several entries in one variable.
	other := write(t, dir, "other.secret", "other-secret-0123\n")
	cfg, err = parseConfig(t, map[string]string{"CLIPGATE_KEYS": "LTAIworker,secret-file=" + secret + "; LTAIother,secret-file=" + other})
	if err != nil || len(cfg.Keys) != 2 || cfg.Keys[1].ID != "LTAIother" || cfg.Keys[1].Secret != "other-secret-0123" {
		t.Errorf("$CLIPGATE_KEYS: %+v, %v", cfg.Keys, err)
	}
	open := filepath.Join(dir, "open.secret")
	if err := os.WriteFile(open, []byte("open-secret-0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"inline secret":     {[]string{"--keys", "LTAIx,secret=abc"}, "secret-file=FILE"},
		"inline policy":     {[]string{"--roles", "r,policy={}"}, "policy-file=FILE"},
		"unknown field":     {[]string{"--keys", "LTAIx,secret-file=" + secret + ",colour=red"}, "colour"},
		"no value":          {[]string{"--keys", "LTAIx,secret-file"}, "key=value"},
		"field twice":       {[]string{"--keys", "LTAIx,user=a,user=b,secret-file=" + secret}, "twice"},
		"no name":           {[]string{"--roles", ",policy-file=" + rolePol}, "NAME"},
		"no secret":         {[]string{"--keys", "LTAIx"}, "no secret"},
		"readable secret":   {[]string{"--keys", "LTAIx,secret-file=" + open}, "chmod 600"},
		"missing policy":    {[]string{"--keys", "LTAIx,secret-file=" + secret + ",policy-file=" + filepath.Join(dir, "none")}, "no such file"},
		"bad duration":      {[]string{"--roles", "r,policy-file=" + rolePol + ",max-session-duration=long"}, "max-session-duration"},
		"role no policy":    {[]string{"--roles", "r"}, "no policy"},
		"policy not json":   {[]string{"--roles", "r,policy-file=" + secret}, "policy"},
		"session too short": {[]string{"--roles", "r,policy-file=" + rolePol + ",max-session-duration=1m"}, "r"},
	} {
		if _, err := parseConfig(t, nil, append([]string{"--data-dir", dir}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}

// TestLeastPrivilege: a setup where the token worker's key may only assume the device role
// and the console's key may only read, list and delete clips, given by flags with the
// secrets and policies in files: no secret is written inline anywhere. Each key can do
// what it is for and nothing else, through the official SDKs.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	workerSecret := write(t, dir, "worker.secret", "worker-secret-0123456789\n")
	consoleSecret := write(t, dir, "console.secret", "console-secret-0123456789\n")
	write(t, dir, "assume.json", `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"acs:ram::*:role/clipgate-device"}]}`)
	write(t, dir, "console.json", `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:GetObject","oss:ListObjects","oss:DeleteObject"],"Resource":["acs:oss:*:*:clips","acs:oss:*:*:clips/*"]}]}`)
	write(t, dir, "device.json", `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:PutObject","Resource":"acs:oss:*:*:clips/*"}]}`)
	for name, args := range map[string][]string{
		"flags": {"--buckets", "clips",
			"--keys", "LTAIworker,secret-file=" + workerSecret + ",policy-file=" + filepath.Join(dir, "assume.json"),
			"--keys", "LTAIconsole,secret-file=" + consoleSecret + ",policy-file=" + filepath.Join(dir, "console.json"),
			"--roles", "clipgate-device,policy-file=" + filepath.Join(dir, "device.json")},
		"file": {"--config", write(t, dir, "localcloud.yaml", `
buckets: [clips]
keys:
  - {id: LTAIworker, secret-file: worker.secret, policy-file: assume.json}
  - LTAIconsole,secret-file=console.secret,policy-file=console.json  # as on the command line
roles:
  - {name: clipgate-device, policy-file: device.json}
`)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := start(t, append(args, "--data-dir", t.TempDir(), "--oss-addr", "127.0.0.1:0", "--sts-addr", "127.0.0.1:0", "--log-level", "error")...)
			ossEndpoint, stsEndpoint := r.field(t, "OSS endpoint"), r.field(t, "STS endpoint")
			arn := "acs:ram::" + localcloud.DefaultAccountID + ":role/clipgate-device"
			bucket := func(id, secret string, opts ...oss.ClientOption) *oss.Bucket {
				t.Helper()
				c, err := oss.New(ossEndpoint, id, secret, append(opts, oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region(localcloud.DefaultRegion))...)
				if err != nil {
					t.Fatal(err)
				}
				b, err := c.Bucket("clips")
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			// The worker's key assumes the role; the role's credentials write a clip.
			creds, err := assumeRoleCreds(t, stsEndpoint, "LTAIworker", "worker-secret-0123456789", arn)
			if err != nil {
				t.Fatalf("the worker's key cannot assume the role: %v", err)
			}
			device := bucket(creds.AccessKeyId, creds.AccessKeySecret, oss.SecurityToken(creds.SecurityToken))
			if err := device.PutObject("cam-1/a.mp4", strings.NewReader("frames")); err != nil {
				t.Fatalf("the role's credentials cannot write: %v", err)
			}
			worker := bucket("LTAIworker", "worker-secret-0123456789")
			if _, err := worker.GetObject("cam-1/a.mp4"); !isDenied(err) {
				t.Errorf("the worker's key read a clip: %v", err)
			}
			// The console's key reads, lists and deletes, and does nothing else.
			console := bucket("LTAIconsole", "console-secret-0123456789")
			if err := console.PutObject("cam-1/b.mp4", strings.NewReader("x")); !isDenied(err) {
				t.Errorf("the console's key wrote a clip: %v", err)
			}
			if err := assumeRole(t, stsEndpoint, "LTAIconsole", "console-secret-0123456789", arn); err == nil || !strings.Contains(err.Error(), "NoPermission") {
				t.Errorf("the console's key assumed the role: %v", err)
			}
			list, err := console.ListObjects()
			if err != nil || len(list.Objects) != 1 || list.Objects[0].Key != "cam-1/a.mp4" {
				t.Fatalf("list: %+v, %v", list, err)
			}
			body, err := console.GetObject("cam-1/a.mp4")
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			body.Close()
			if err := console.DeleteObject("cam-1/a.mp4"); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if strings.Contains(r.out.String(), "secret-0123456789") {
				t.Errorf("the banner prints a secret:\n%s", r.out)
			}
		})
	}
}

// isDenied reports whether err is OSS's AccessDenied.
func isDenied(err error) bool {
	se, ok := err.(oss.ServiceError)
	return ok && se.Code == "AccessDenied"
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }, Samples: map[string][]string{
		"keys":  {"LTAIa,secret-file=/a", "LTAIb,secret-file=/b", "LTAIc,secret-file=/c"},
		"roles": {"a,policy-file=/a", "b,policy-file=/b", "c,policy-file=/c"},
	}})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 when
// an address is taken.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := t.TempDir()
	clitest.CheckExitCodes(t, "localcloud", run, clitest.Exits{
		cli.ExitUsage: {
			{"--data-dir", data, "--buckets", "-x-"},
			{"--data-dir", data, "--keys", "LTAIx"},
			{"--sts-rate", "fast"},
		},
		cli.ExitFailure: {{"--data-dir", data, "--oss-addr", busy.Addr().String(), "--sts-addr", "127.0.0.1:0"}},
	})
}
