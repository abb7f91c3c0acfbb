package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// TestRunAnswersOverMQTT runs the command in-process against a real broker and local cloud:
// two workers, a device request answered with sealed credentials, then a revocation picked
// up from the watched file, then a clean Close.
func TestRunAnswersOverMQTT(t *testing.T) {
	dir := t.TempDir()
	fleetFile := fleetKeyFile(t, dir)
	fleet, err := identity.LoadKeyring(fleetFile)
	if err != nil {
		t.Fatal(err)
	}

	// Local cloud with one role.
	stsSecret := "sts-secret-for-the-run-test-0123"
	lc, err := localcloud.Start(localcloud.Config{
		DataDir: t.TempDir(),
		Keys:    []localcloud.AccessKey{{ID: "LTAIrunTestKey0001", Secret: stsSecret}},
		Roles: []localcloud.Role{{Name: "uploader", Policy: `{"Version":"1","Statement":[{"Effect":"Allow",` +
			`"Action":["oss:*"],"Resource":["acs:oss:*:*:clips/*"]}]}`}},
		Buckets: []string{"clips"},
		Logger:  zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()

	// Broker with the worker's service account.
	accFile := testutil.AccountsFile(t, dir, testutil.Account{User: "tw", Password: "run-test-password", Role: "tokenworker"})
	accounts, err := identity.LoadServiceAccounts(accFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", HTTPAddr: "none", ConnectKeys: fleet.ConnectRoots(), ServiceAccounts: accounts})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	revFile := writeFile(t, dir, "revoked.txt", "# none yet\n", 0o644)
	cfgFile := writeFile(t, dir, "tokenworker.yaml", `
username: tw
sts:
  scheme: http
  access-key-id: LTAIrunTestKey0001
  role-arn: acs:ram::`+localcloud.DefaultAccountID+`:role/uploader
oss:
  bucket: clips
  prefix: cams/
device-rate: 1000
device-burst: 1000
`, 0o600)
	m, logs := newTestMain(map[string]string{envPassword: "run-test-password", envSTSSecret: stsSecret})
	err = m.ParseFlags([]string{"--config", cfgFile, "--broker", "tcp://" + b.Addr(), "--fleet-keys-file", fleetFile,
		"--revocations-file", revFile, "--sts-endpoint", lc.STSEndpoint(), "--oss-endpoint", lc.OSSEndpoint(),
		"--workers", "2", "--client-id", "tw:run", "--connect-timeout", "30s", "--log-level", "debug", "--metrics-addr", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = m.Close()
		}
	}()
	if n := len(m.Workers()); n != 2 {
		t.Fatalf("%d workers, want 2", n)
	}

	const id = "cam-run-1"
	key, err := identity.NewDeviceKey(fleet, id)
	if err != nil {
		t.Fatal(err)
	}
	replies := make(chan []byte, 8)
	dev, err := mqttclient.New(mqttclient.Config{BrokerURL: "tcp://" + b.Addr(), ClientID: id, NoReconnect: true,
		Credentials: func() (string, string) { return id, key.Password(time.Now()) },
		Subscriptions: []mqttclient.Subscription{{Filter: topics.Default().AuthReply(id), QoS: 1, Handler: func(m mqttclient.Message) {
			replies <- m.Payload()
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	connectCtx, cancelConnect := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelConnect()
	if err := dev.Connect(connectCtx); err != nil {
		t.Fatalf("device connect: %v", err)
	}
	ask := func() (*protocol.AuthRequest, *protocol.AuthReply) {
		t.Helper()
		nonce := make([]byte, protocol.NonceSize)
		_, _ = rand.Read(nonce)
		req := &protocol.AuthRequest{V: 1, ID: base64.RawURLEncoding.EncodeToString(nonce[:6]), Device: id,
			TS: time.Now().UTC().Format(time.RFC3339), Nonce: base64.RawURLEncoding.EncodeToString(nonce), Mode: "w", KID: key.KeyID}
		req.Sig = identity.Sign(key.Request, req.SigningString())
		payload, _ := json.Marshal(req)
		if tok := dev.Publish(topics.Default().AuthRequest(id), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		select {
		case raw := <-replies:
			rep, err := protocol.DecodeAuthReply(raw)
			if err != nil || rep.ID != req.ID {
				t.Fatalf("reply %s: %v", raw, err)
			}
			return req, rep
		case <-time.After(30 * time.Second):
			t.Fatal("no reply")
		}
		return nil, nil
	}

	req, rep := ask()
	if !rep.OK || rep.Sealed == "" || rep.OSS.Prefix != "cams/"+id+"/" || rep.OSS.Bucket != "clips" {
		t.Fatalf("reply = %+v", rep)
	}
	sealed, _ := base64.RawURLEncoding.DecodeString(rep.Sealed)
	nonce, _ := base64.RawURLEncoding.DecodeString(req.Nonce)
	if _, err := identity.Open(key.Request, nonce, sealed, tokenworker.ReplyAAD(id, req.ID)); err != nil {
		t.Fatalf("open sealed: %v", err)
	}
	// --metrics-addr: the request is counted, both workers are connected and ready.
	metrics := opstest.Scrape(t, m.OpsAddr())
	for series, want := range map[string]float64{
		opstest.Series("clipgate_tokenworker_requests_total"):                                  1,
		opstest.Series("clipgate_tokenworker_replies_total", "code", "ok"):                     1,
		opstest.Series("clipgate_tokenworker_sts_call_duration_seconds_count", "result", "ok"): 1,
		opstest.Series("clipgate_tokenworker_broker_connected"):                                2,
	} {
		if metrics[series] != want {
			t.Errorf("%s = %v, want %v", series, metrics[series], want)
		}
	}
	if status, rep := opstest.Health(t, m.OpsAddr(), "/readyz"); status != 200 || len(rep.Checks) != 2 {
		t.Errorf("/readyz: %d %+v", status, rep)
	}

	// Revoke through the file (written and renamed into place, as recommended).
	tmp := filepath.Join(dir, "revoked.tmp")
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, revFile); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, rep := ask()
		if !rep.OK && rep.Error.Code == protocol.CodeRevoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revocation file change not picked up; last reply %+v", rep)
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed = true
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The log is JSON lines whose keys are unique.
	if lines := clitest.CheckJSONLog(t, logs.String()); len(lines) == 0 {
		t.Error("no log at --log-level debug")
	}
}

func TestRunFailsFast(t *testing.T) {
	dir := t.TempDir()
	fleet := fleetKeyFile(t, dir)
	m, _ := newTestMain(map[string]string{envSTSSecret: "x"})
	// Nothing listens on port 1: Run gives up after --connect-timeout.
	if err := m.ParseFlags(append(requiredArgs(fleet), "--broker", "tcp://127.0.0.1:1", "--connect-timeout", "300ms",
		"--log-level", "error")); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded without a broker")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestQuotasKeyFileRefused: an unreadable or garbage --quotas-key-file stops Run with a
// usage error naming the flag, before anything connects.
func TestQuotasKeyFileRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fleet := fleetKeyFile(t, dir)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"missing": {[]string{"--quotas-key-file", filepath.Join(dir, "none.pub")}, "--quotas-key-file"},
		"garbage": {[]string{"--quotas-key-file", writeFile(t, dir, "bad.pub", "not a key\n", 0o644)}, "--quotas-key-file"},
	} {
		t.Run(name, func(t *testing.T) {
			m, _ := newTestMain(map[string]string{envSTSSecret: "x"})
			if err := m.ParseFlags(append(append(requiredArgs(fleet), "--broker", "tcp://127.0.0.1:1", "--log-level", "error"), tc.args...)); err != nil {
				t.Fatal(err)
			}
			err := m.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error mentioning %q", err, tc.want)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
