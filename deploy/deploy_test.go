// Package deploy holds the deployment files (systemd units, example configurations, the
// Grafana dashboard); its tests check them against the code.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/libmetrics"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// unit is a parsed systemd unit: section -> key -> values (a key may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) != k || k == "" {
				t.Fatalf("%s:%d: not a setting in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// units are the commands' units and their example configurations.
var units = map[string]string{
	"clipgate-broker.service":       "broker.yaml",
	"clipgate-tokenworker.service":  "tokenworker.yaml",
	"clipgate-console.service":      "console.yaml",
	"clipgate-localcloud.service":   "localcloud.yaml",
	"clipgate-device.service":       "device.yaml",
	"clipgate-nats-callout.service": "nats-callout.yaml",
}

var credentialRE = regexp.MustCompile(`/run/credentials/([a-z-]+\.service)/([A-Za-z0-9._-]+)`)

// TestUnits checks each unit's hardening, and that every credential a configuration
// names under /run/credentials/UNIT/ is one its unit loads (and the other way round).
func TestUnits(t *testing.T) {
	t.Parallel()
	for name, config := range units {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u := parseUnit(t, filepath.Join("systemd", name))
			for key, want := range map[string]string{
				"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
				"PrivateDevices": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "", "RestrictSUIDSGID": "yes",
				"Restart": "on-failure", "Type": "exec",
			} {
				if got, ok := u.get("Service", key); !ok || got != want {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
			user, _ := u.get("Service", "User")
			if !strings.HasPrefix(user, "clipgate-") {
				t.Errorf("User=%q: want a dedicated clipgate-* user", user)
			}
			if umask, _ := u.get("Service", "UMask"); umask != "0077" && umask != "0007" {
				t.Errorf("UMask=%q", umask)
			}
			exec, _ := u.get("Service", "ExecStart")
			if !strings.Contains(exec, "--config /etc/clipgate/"+config) {
				t.Errorf("ExecStart=%q does not read /etc/clipgate/%s", exec, config)
			}
			loaded := map[string]bool{}
			for _, lc := range u["Service"]["LoadCredential"] {
				id, path, ok := strings.Cut(lc, ":")
				if !ok || !strings.HasPrefix(path, "/etc/clipgate/credentials/") {
					t.Errorf("LoadCredential=%s: want ID:/etc/clipgate/credentials/FILE", lc)
				}
				loaded[id] = true
			}
			cfg, err := os.ReadFile(filepath.Join("config", config))
			if err != nil {
				t.Fatal(err)
			}
			used := map[string]bool{}
			for _, m := range credentialRE.FindAllStringSubmatch(string(cfg), -1) {
				if m[1] != name {
					t.Errorf("%s names a credential of %s", config, m[1])
				}
				if !loaded[m[2]] {
					t.Errorf("%s names credential %s, which %s does not load", config, m[2], name)
				}
				used[m[2]] = true
			}
			for id := range loaded {
				if !used[id] {
					t.Errorf("%s loads credential %s, which %s does not use", name, id, config)
				}
			}
			if state, ok := u.get("Service", "StateDirectory"); ok && !strings.Contains(string(cfg), "/var/lib/"+state) {
				t.Errorf("StateDirectory=%s is not used by %s", state, config)
			}
		})
	}
}

// TestUnitsVerify runs systemd-analyze verify on the units when it is installed (with
// CLIPGATE_E2E=1 it must be) and fails on any complaint: it exits 0 on unknown keys and
// bad values, with a warning. The binaries are not installed here, so ExecStart runs
// /bin/true in the copies it checks.
func TestUnitsVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CLIPGATE_E2E") == "1" {
			t.Fatal("systemd-analyze not installed (CLIPGATE_E2E=1: apt-get install systemd)")
		}
		t.Skip("systemd-analyze not installed; TestUnits parse-checks the units")
	}
	dir := t.TempDir()
	var paths []string
	execRE := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/clipgate-[a-z]+`)
	for name := range units {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, execRE.ReplaceAll(data, []byte("ExecStart=/bin/true")), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// registryNames returns the names of every metric the commands export.
func registryNames(t *testing.T) map[string]bool {
	t.Helper()
	ctx := context.Background()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{ConnectKeys: fleet.ConnectRoots()})
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := localcloud.Start(localcloud.Config{DataDir: t.TempDir(), Buckets: []string{"clips"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	db, err := console.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	client, err := oss.New(cloud.OSSEndpoint(), "id", "secret", oss.ForcePathStyle(true))
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket("clips")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Config{Store: db, Bucket: bucket, PasswordHash: string(hash)})
	if err != nil {
		t.Fatal(err)
	}
	cs := []prometheus.Collector{b.Collector(), tokenworker.NewMetrics(), cloud.Collector(),
		libmetrics.ConsumerCollector(nil, nil), libmetrics.DeviceCollector(nil, nil)}
	cs = append(cs, con.Collectors()...)
	names := opstest.DescribedNames(cs...)
	fams, err := ops.NewRegistry("x").Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	return names
}

// TestDashboard: the Grafana dashboard is JSON with panels, and every clipgate metric it
// queries is exported by one of the commands.
func TestDashboard(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("grafana", "clipgate-fleet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard %q (%s) with %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	names := registryNames(t)
	metricRE := regexp.MustCompile(`\b(?:clipgate|go|process)_[a-z0-9_]+`)
	queried := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				queried++
				base := m
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && names[b] {
						base = b
					}
				}
				if !names[base] {
					t.Errorf("panel %q queries %s, which no command exports", p.Title, m)
				}
			}
		}
	}
	if queried < 30 {
		t.Errorf("only %d metric references found", queried)
	}
}
