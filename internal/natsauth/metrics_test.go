package natsauth

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/natscluster"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/topics"
)

// TestGarbageRequestsCounted: messages on the callout's subject that are no
// authorization request get no answer and are counted as invalid_request, nothing else.
// (The cluster lets no client publish there; the server alone sends requests. Decisions
// on real traffic are counted in cmd/broker's TestNATSCallout.)
func TestGarbageRequestsCounted(t *testing.T) {
	t.Parallel()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{HTTPAddr: "none", ConnectKeys: fleet.ConnectRoots()})
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := nkeys.CreateAccount()
	seed, _ := issuer.Seed()
	m := NewMetrics()
	s, err := New(Config{URLs: []string{"nats://127.0.0.1:1"}, Username: "callout", Password: "pw", IssuerSeed: seed, Broker: b, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	// A signed JWT of another kind: a user's.
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	userJWT, err := jwt.NewUserClaims(upub).Encode(issuer)
	if err != nil {
		t.Fatal(err)
	}
	garbage := [][]byte{nil, []byte("not a JWT"), []byte("a.b.c"), []byte(userJWT), make([]byte, 1<<16)}
	for _, g := range garbage {
		s.handle(&nats.Msg{Subject: AuthSubject, Data: g})
	}
	if st := s.Stats(); st.Invalid != int64(len(garbage)) || st.Allowed != 0 || st.Refused != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v, want %d invalid and nothing else", st, len(garbage))
	}
	reg := ops.NewRegistry("broker")
	reg.MustRegister(m)
	srv, err := ops.Serve("127.0.0.1:0", "broker", reg, m.ReadyCheck())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := opstest.Scrape(t, srv.Addr())
	const sub = "clipgate_nats_callout_"
	for series, want := range map[string]float64{
		opstest.Series(sub+"decisions_total", "outcome", OutcomeInvalid): float64(len(garbage)),
		opstest.Series(sub+"decisions_total", "outcome", OutcomeAllowed): 0,
		opstest.Series(sub + "decision_duration_seconds_count"):          0,
		opstest.Series(sub + "nats_connected"):                           0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	// Not started: not connected, so not ready.
	if status, _ := opstest.Health(t, srv.Addr(), "/readyz"); status != 503 {
		t.Errorf("/readyz %d, want 503", status)
	}
}

// TestKicks: kicking a connection that has already gone (the device reconnected
// elsewhere, or another instance admitted it again) is neither an error nor a kick: the
// server answers "no such client or leafnode id" (it was counted and logged as a failed
// kick). A kick that fails is tried again.
func TestKicks(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	issuer, _ := nkeys.CreateAccount()
	pub, _ := issuer.PublicKey()
	cl, err := natscluster.Start(ctx, natscluster.Options{Dir: t.TempDir(), Topics: topics.Default(),
		CalloutUser: "callout", CalloutPassword: "callout-pw-1", SysUser: "sys", SysPassword: "sys-pw-1", Issuer: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	revs := identity.NewRevocations()
	b, err := broker.New(broker.Config{HTTPAddr: "none", ConnectKeys: fleet.ConnectRoots(), Revocations: revs})
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := issuer.Seed()
	// Connected to the node whose connections it kicks: the kick subject is then known
	// to the system connection's node at once (another node may not know it yet, right
	// after the cluster started: "no responders").
	s, err := New(Config{URLs: []string{cl.Nodes()[0].ClientURL()}, Username: "callout", Password: "callout-pw-1", IssuerSeed: seed, Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	if s.sys, err = s.dial(ctx, "sys", "sys-pw-1", "kick-test"); err != nil {
		t.Fatal(err)
	}
	defer s.sys.Close()
	gone, err := s.kick(ctx, conn{server: cl.Nodes()[0].Server().ID(), cid: 1 << 40})
	if err != nil || !gone {
		t.Fatalf("kick of a connection that is not there: gone %v, %v", gone, err)
	}

	// A kick that fails (here: the system connection is down) is tried again at the next
	// sweep: the revoked device stays watched (it used to be forgotten, left connected).
	revs.Set([]string{"cam-k"})
	s.admitted["cam-k"] = conn{server: cl.Nodes()[0].Server().ID(), cid: 1 << 40}
	s.sys.Close()
	s.sweepOnce(ctx)
	if st := s.Stats(); st.KickErrors != 1 || st.Kicked != 0 || st.Admitted != 1 {
		t.Fatalf("after a failed kick: %+v, want 1 kick error and the device still watched", st)
	}
}
