package integration

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// The abuse cases of issue 12 against the whole stack (broker, token workers, local
// OSS and STS, and the console where it takes part). Each limit's edge cases are in its
// package's tests (internal/broker limits_test.go, internal/ossdeny, internal/console
// revoke_test.go); here they are the attacks the abuse run made, end to end.

// TestAbuseCapturedPassword (issue 12 point 4): a captured CONNECT password connects
// once. Replayed, while its connection is up or after, it is refused (bad user name or
// password) and counted; a fresh password still connects. The password of a device whose
// clock is 2 h off (either way) connects.
func TestAbuseCapturedPassword(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{})
	const dev = "cam-abuse-pw"
	key := stack.DeviceKey(dev)

	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		c, err := connectMQTT(ctx, stack.BrokerURL(), dev, dev, key.Password(time.Now().Add(skew)))
		if err != nil {
			t.Fatalf("password made with the clock %v off: %v", skew, err)
		}
		c.close()
	}

	captured := key.Password(time.Now())
	owner, err := connectMQTT(ctx, stack.BrokerURL(), dev, dev, captured)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.close()
	if _, err := connectMQTT(ctx, stack.BrokerURL(), dev, dev, captured); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("replay while the device is connected: %v, want %v", err, packets.ErrorRefusedBadUsernameOrPassword)
	}
	select {
	case err := <-owner.lost:
		t.Fatalf("the replay took the device's connection over: %v", err)
	default:
	}
	owner.close()
	if _, err := connectMQTT(ctx, stack.BrokerURL(), dev, dev, captured); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("replay after the device left: %v, want %v", err, packets.ErrorRefusedBadUsernameOrPassword)
	}
	if n := stack.BrokerStats().PasswordReplays; n != 2 {
		t.Errorf("broker counted %d password replays, want 2", n)
	}
	// The device itself, with a fresh password at every connect, is not hindered.
	kit := newKit(ctx, t, stack, dev, nil)
	if _, err := kit.Credentials(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestAbuseDeviceTopics (issue 12 point 5): a device may retain only its own status. A
// retained upload event, and an event on a name outside the protocol (retained or not),
// end the device's connection, nothing of them is stored or delivered: a consumer that
// subscribes afterwards gets the device's retained status and, of the events, only a
// marker published last.
func TestAbuseDeviceTopics(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{BrokerConfig: func(c *broker.Config) {
		c.Limits.ClientConnectBurst = 20 // the device reconnects after each refused publish
	}})
	scheme := stack.Topics()
	const dev = "cam-abuse-topics"
	key := stack.DeviceKey(dev)

	c, err := connectDevice(ctx, stack, dev, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitToken(ctx, c.client.Publish(scheme.Status(dev), 1, true, []byte("online"))); err != nil {
		t.Fatalf("retained own status: %v", err)
	}
	c.close()

	refused := []struct {
		topic    string
		retained bool
	}{
		{scheme.UploadEvent(dev), true},
		{scheme.Root() + "/devices/" + dev + "/events/motion", false},
		{scheme.Root() + "/devices/" + dev + "/events/motion", true},
		{scheme.Root() + "/devices/" + dev + "/events/Upload", false},
		{scheme.Status("cam-abuse-other"), true},
	}
	for _, r := range refused {
		c, err := connectDevice(ctx, stack, dev, key)
		if err != nil {
			t.Fatal(err)
		}
		c.client.Publish(r.topic, 1, r.retained, []byte(`{"abuse":true}`))
		select {
		case <-c.lost:
		case <-ctx.Done():
			t.Fatalf("publish on %s (retained %v): the device is still connected", r.topic, r.retained)
		}
		c.close()
	}
	st := stack.BrokerStats()
	if st.RetainRefused < 1 {
		t.Errorf("broker counted %d refused retains, want at least the retained upload event", st.RetainRefused)
	}

	late, err := connectService(ctx, stack, topics.RoleConsumer)
	if err != nil {
		t.Fatal(err)
	}
	defer late.close()
	late.mustSubscribe(ctx, t, scheme.StatusFilter(""))
	late.mustSubscribe(ctx, t, scheme.Root()+"/devices/+/events/+")
	if m, err := late.next(ctx, scheme.Status(dev)); err != nil || string(m.payload) != "online" {
		t.Fatalf("late consumer: status %q, %v; want the retained %q", m.payload, err, "online")
	}
	c, err = connectDevice(ctx, stack, dev, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.publish(ctx, scheme.UploadEvent(dev), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	m, err := late.nextAny(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.topic != scheme.UploadEvent(dev) || string(m.payload) != "marker" {
		t.Fatalf("late consumer got %s %q before the marker: a refused publish was stored or delivered", m.topic, m.payload)
	}
}

// TestAbuseServicePasswordGuessing (issue 12 point 6): wrong passwords for a service
// account are held back, and after three the source address and the username are
// blocked: the right password is refused too (server unavailable) until the block ends
// on the broker's clock. Devices keep connecting and uploading meanwhile.
func TestAbuseServicePasswordGuessing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	clk := newClock(0)
	stack := inproc.New(t, inproc.Options{BrokerConfig: func(c *broker.Config) {
		c.Now = clk.Now
		c.Limits.FailureDelay, c.Limits.MaxFailureDelay = time.Millisecond, 2*time.Millisecond
		c.Limits.BlockAfter, c.Limits.BlockFor = 3, time.Minute
	}})
	user, pw := stack.ServiceAccount(topics.RoleAdmin)
	login := func(password string) error {
		c, err := connectMQTT(ctx, stack.BrokerURL(), broker.ServiceClientID(user, randomHex(4)), user, password)
		if err == nil {
			c.close()
		}
		return err
	}
	for i := range 3 {
		if err := login("guess-" + strconv.Itoa(i)); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			t.Fatalf("guess %d: %v, want %v", i, err, packets.ErrorRefusedBadUsernameOrPassword)
		}
	}
	if err := login(pw); !errors.Is(err, packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("right password while blocked: %v, want %v", err, packets.ErrorRefusedServerUnavailable)
	}
	st := stack.BrokerStats()
	if st.LoginsDelayed != 3 || st.LoginsBlocked != 1 {
		t.Errorf("broker counted %d delayed and %d blocked logins, want 3 and 1", st.LoginsDelayed, st.LoginsBlocked)
	}

	kit := newKit(ctx, t, stack, "cam-abuse-guess", nil)
	clip, err := writeClip(t.TempDir(), "during-attack.mp4", 1500)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip.path, RecordedAt: time.Now()})
	if err != nil {
		t.Fatalf("a device uploading while service logins are blocked: %v", err)
	}
	if err := checkObject(stack.AdminBucket(t), ev.Key, clip.data, "Normal"); err != nil {
		t.Error(err)
	}

	clk.Set(time.Minute + time.Second)
	if err := login(pw); err != nil {
		t.Fatalf("right password after the block: %v", err)
	}
}

// TestAbuseConnectionLimits (issue 12 point 7): a device reconnecting in a loop is
// refused past its burst (server unavailable) until its bucket refills on the broker's
// clock, while another device connects; a client past its subscription limit gets SUBACK
// 0x80 for a new filter. Both are counted.
func TestAbuseConnectionLimits(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	clk := newClock(0)
	stack := inproc.New(t, inproc.Options{BrokerConfig: func(c *broker.Config) {
		c.Now = clk.Now
		c.Limits.ClientConnectRate, c.Limits.ClientConnectBurst = 60, 3 // one a second
		c.Limits.MaxSubscriptions = 3
	}})
	const dev = "cam-abuse-loop"
	key := stack.DeviceKey(dev)
	connect := func(id string) error {
		c, err := connectDevice(ctx, stack, id, stack.DeviceKey(id))
		if err == nil {
			c.close()
		}
		return err
	}
	for i := range 3 {
		if err := connect(dev); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if err := connect(dev); !errors.Is(err, packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("connection past the burst: %v, want %v", err, packets.ErrorRefusedServerUnavailable)
	}
	if err := connect("cam-abuse-calm"); err != nil {
		t.Fatalf("another device: %v", err)
	}
	clk.Set(time.Second)
	c, err := connectDevice(ctx, stack, dev, key)
	if err != nil {
		t.Fatalf("a second later: %v", err)
	}
	defer c.close()

	admin, err := connectService(ctx, stack, topics.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.close()
	for i := range 3 {
		admin.mustSubscribe(ctx, t, stack.Topics().Root()+"/x/"+strconv.Itoa(i))
	}
	if code, err := admin.subscribe(ctx, stack.Topics().Root()+"/x/3"); err != nil || code != 0x80 {
		t.Fatalf("subscription past the limit: SUBACK %#x, %v; want 0x80", code, err)
	}
	st := stack.BrokerStats()
	if st.ClientRateLimited != 1 || st.SubscriptionsRefused != 1 {
		t.Errorf("broker counted %d rate-limited connects and %d refused subscriptions, want 1 and 1", st.ClientRateLimited, st.SubscriptionsRefused)
	}
}

// TestAbuseRevokedCredentials (issue 12 point 3): the console revokes a device. Broker
// and token workers follow its signed revocation list over MQTT (they share no file with
// it); the credentials the device got before the revocation get 403 AccessDenied from
// OSS at once (the console's bucket-policy Deny); the broker has disconnected the device
// and refuses it; another device uploads on. After the restore the device connects and
// gets new credentials (not the ones a worker cached before the revocation) and uploads,
// and the console indexes that clip as verified.
func TestAbuseRevokedCredentials(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	workers := identity.NewRevocations()
	stack := inproc.New(t, inproc.Options{
		BrokerConfig: func(c *broker.Config) { c.Revocations, c.RevocationsKey = nil, pub },
		WorkerConfig: func(c *tokenworker.Config) { c.Revocations, c.RevocationsKey = workers, pub },
	})
	cons, db := startConsoleWith(ctx, t, stack, topics.RoleConsole, func(c *console.Config) {
		c.RevocationKey, c.DenyRoleARN = seed, stack.RoleARN()
	})
	const dev, other = "cam-abuse-revoked", "cam-abuse-bystander"
	kit := newKit(ctx, t, stack, dev, nil)
	bystander := newKit(ctx, t, stack, other, nil)
	upload := func(k *devicekit.Kit, name string) *protocol.UploadEvent {
		t.Helper()
		clip, err := writeClip(t.TempDir(), name, 1500)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := k.Upload(ctx, devicekit.Clip{Path: clip.path, RecordedAt: time.Now()})
		if err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
		return ev
	}
	upload(kit, "before.mp4")
	creds, err := kit.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(c *devicekit.Credentials, device, name string) error {
		t.Helper()
		client, err := oss.New(c.OSS.Endpoint, c.AccessKeyID, c.AccessKeySecret, oss.SecurityToken(c.SecurityToken),
			oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region(c.OSS.Region))
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.Bucket(c.OSS.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		return b.PutObject(stack.Prefix()+device+"/"+name, strings.NewReader("probe"))
	}
	if err := put(creds, dev, "probe-before"); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}

	if err := cons.SetRevoked(ctx, dev, true); err != nil {
		t.Fatal(err)
	}
	wantAccessDenied(t, "credentials issued before the revocation", put(creds, dev, "probe-after"))
	faultPoll(ctx, t, "the broker disconnected the revoked device", func() bool { return stack.BrokerStats().RevokedDisconnects >= 1 })
	faultPoll(ctx, t, "the workers follow the list", func() bool { return workers.Revoked(dev) })
	if _, err := connectDevice(ctx, stack, dev, stack.DeviceKey(dev)); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("revoked device connecting: %v, want %v", err, packets.ErrorRefusedNotAuthorised)
	}
	upload(bystander, "bystander.mp4")

	if err := cons.SetRevoked(ctx, dev, false); err != nil {
		t.Fatal(err)
	}
	faultPoll(ctx, t, "the workers follow the restore", func() bool { return !workers.Revoked(dev) })
	kit.Close()
	// The restored kit asks a worker (credentials it kept on disk would be used first):
	// this is about the workers' cache.
	if err := forgetKeptCredentials(stack, dev); err != nil {
		t.Fatal(err)
	}
	restored := newKit(ctx, t, stack, dev, nil)
	fresh, err := restored.Credentials(ctx)
	if err != nil {
		t.Fatalf("credentials after the restore: %v", err)
	}
	if fresh.AccessKeyID == creds.AccessKeyID {
		t.Fatal("the restored device got its pre-revocation credentials back from a worker's cache")
	}
	if err := put(fresh, dev, "probe-restored"); err != nil {
		t.Fatalf("new credentials after the restore: %v", err)
	}
	ev := upload(restored, "after.mp4")
	if c := waitClip(ctx, t, db, ev.Key); !c.Verified || c.Device != dev {
		t.Fatalf("clip uploaded after the restore indexed as %+v, want a verified clip of the device", c)
	}
}
