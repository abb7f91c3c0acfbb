package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/internal/natscluster"
	"github.com/clipgate/clipgate/topics"
)

func TestSubjectTopic(t *testing.T) {
	t.Parallel()
	for topic, subj := range map[string]string{
		"clipgate/v1/devices/cam-1/events/upload":  "clipgate.v1.devices.cam-1.events.upload",
		"clipgate/v1/devices/cam-1/events/a.b":     "clipgate.v1.devices.cam-1.events.a//b",
		"acme/cams/devices/x_y/status":             "acme.cams.devices.x_y.status",
		"clipgate/v1/devices/+/events/+":           "clipgate.v1.devices.*.events.*",
		"clipgate/v1/#":                            "clipgate.v1.>",
		"a.b.c/d":                                  "a//b//c.d",
		"clipgate/v1/devices/cam-1/auth/request":   "clipgate.v1.devices.cam-1.auth.request",
		"$SYS/broker/x":                            "$SYS.broker.x",
		"clipgate/v1/devices/cam-1/events/..":      "clipgate.v1.devices.cam-1.events.////",
		"clipgate/v1/devices/cam-1/events/x.y.z.w": "clipgate.v1.devices.cam-1.events.x//y//z//w",
	} {
		if got := natsbus.Subject(topic); got != subj {
			t.Errorf("Subject(%q) = %q, want %q", topic, got, subj)
		}
		if topic[len(topic)-1] != '+' && topic[len(topic)-1] != '#' {
			if got := natsbus.Topic(subj); got != topic {
				t.Errorf("Topic(%q) = %q, want %q", subj, got, topic)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	good := natsbus.Conn{URLs: []string{"nats://127.0.0.1:4222"}, Username: "u", Password: "p"}
	bad := map[string]func() error{
		"no URL": func() error {
			c := good
			c.URLs = nil
			_, err := natsbus.NewWorkers(natsbus.WorkersConfig{Conn: c})
			return err
		},
		"http URL": func() error {
			c := good
			c.URLs = []string{"http://x"}
			_, err := natsbus.NewStatus(natsbus.StatusConfig{Conn: c})
			return err
		},
		"no password": func() error {
			c := good
			c.Password = ""
			_, err := natsbus.NewEvents(natsbus.EventsConfig{Conn: c})
			return err
		},
		"bad partition": func() error {
			_, err := natsbus.NewWorkers(natsbus.WorkersConfig{Conn: good, Partitions: 4, Owned: []int{4}})
			return err
		},
		"neg partition": func() error {
			_, err := natsbus.NewWorkers(natsbus.WorkersConfig{Conn: good, Partitions: -1})
			return err
		},
		"bad group": func() error {
			_, err := natsbus.NewWorkers(natsbus.WorkersConfig{Conn: good, Group: "a/b"})
			return err
		},
		"bad durable": func() error {
			_, err := natsbus.NewEvents(natsbus.EventsConfig{Conn: good, Durable: "a.b"})
			return err
		},
		"short ackwait": func() error {
			_, err := natsbus.NewEvents(natsbus.EventsConfig{Conn: good, AckWait: time.Millisecond})
			return err
		},
	}
	for name, f := range bad {
		if err := f(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func device(t *testing.T, s *inproc.Stack, id string) paho.Client {
	t.Helper()
	cfg := s.DeviceConfig(id)
	o := paho.NewClientOptions().AddBroker(cfg.BrokerURL).SetClientID(id).SetUsername(id).
		SetPassword(identity.MQTTPassword(s.DeviceKey(id), id, time.Now())).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func publish(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestGatewayInternalNames fails if the MQTT gateway's internal names that Events relies
// on change with a server upgrade: the stream $MQTT_msgs, its subjects $MQTT.msgs.>, its
// interest retention, and a QoS 1 event stored there under $MQTT.msgs.<subject>.
func TestGatewayInternalNames(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 1})
	src, err := s.EventsSource("names", "c1")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.Message, 1)
	if err := src.Start(ctx, func(m events.Message) { got <- m }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)

	c := s.NATSConn(topics.RoleConsumer, "inspect")
	nc, err := nats.Connect(c.URLs[0], nats.UserInfo(c.Username, c.Password), nats.Name(c.Name), nats.CustomInboxPrefix("_INBOX."+c.Username))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, natsbus.MQTTStream)
	if err != nil {
		t.Fatalf("stream %s: %v", natsbus.MQTTStream, err)
	}
	info := st.CachedInfo()
	if !slices.Equal(info.Config.Subjects, []string{natsbus.MQTTStreamPrefix + ">"}) || info.Config.Retention != jetstream.InterestPolicy {
		t.Fatalf("%s: subjects %v, retention %v; want [%s>], interest", natsbus.MQTTStream, info.Config.Subjects, info.Config.Retention, natsbus.MQTTStreamPrefix)
	}
	if info.Config.Replicas != 3 {
		t.Errorf("%s has %d replicas, want 3", natsbus.MQTTStream, info.Config.Replicas)
	}

	d := device(t, s, "cam-names")
	topic := s.Topics().UploadEvent("cam-names")
	publish(t, d, topic, "payload")
	select {
	case m := <-got:
		if m.Topic() != topic || string(m.Payload()) != "payload" || m.Duplicate() {
			t.Fatalf("got %q %q dup %v, want %q", m.Topic(), m.Payload(), m.Duplicate(), topic)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the event did not reach the durable consumer on $MQTT_msgs")
	}
}

// TestPartitionAffinity: with the server's partition mapping, two workers owning half the
// partitions each receive every request of a device at the same worker, and both get some.
func TestPartitionAffinity(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 1})
	var mu sync.Mutex
	seen := map[string]map[int]int{} // topic -> worker -> count
	var total sync.WaitGroup
	for w, owned := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9, 10, 11, 12, 13, 14, 15}} {
		tr, err := natsbus.NewWorkers(natsbus.WorkersConfig{Conn: s.NATSConn(topics.RoleTokenWorker, fmt.Sprint("aff", w)),
			Topics: s.Topics(), Group: "affinity", Partitions: natscluster.DefaultPartitions, Owned: owned})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Start(ctx, func(topic string, _ []byte) {
			mu.Lock()
			if seen[topic] == nil {
				seen[topic] = map[int]int{}
			}
			seen[topic][w]++
			mu.Unlock()
			total.Done()
		}); err == nil {
			t.Fatal("a worker subscribed outside its permitted queue group")
		}
		tr.Close()
		tr, err = natsbus.NewWorkers(natsbus.WorkersConfig{Conn: s.NATSConn(topics.RoleTokenWorker, fmt.Sprint("aff", w)),
			Topics: s.Topics(), Partitions: natscluster.DefaultPartitions, Owned: owned})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Start(ctx, func(topic string, _ []byte) {
			mu.Lock()
			if seen[topic] == nil {
				seen[topic] = map[int]int{}
			}
			seen[topic][w]++
			mu.Unlock()
			total.Done()
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
	}
	const devices, rounds = 16, 3
	// The stack's own worker owns every partition in the same group; stop it so that only
	// the two above answer.
	if err := s.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	total.Add(devices * rounds)
	for i := range devices {
		id := fmt.Sprintf("cam-aff-%d", i)
		d := device(t, s, id)
		for r := range rounds {
			publish(t, d, s.Topics().AuthRequest(id), fmt.Sprint(r))
		}
	}
	done := make(chan struct{})
	go func() { total.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("not every request arrived")
	}
	mu.Lock()
	defer mu.Unlock()
	per := [2]int{}
	for topic, by := range seen {
		if len(by) != 1 {
			t.Errorf("%s reached workers %v", topic, by)
		}
		for w, n := range by {
			per[w] += n
		}
	}
	if len(seen) != devices || per[0] == 0 || per[1] == 0 {
		t.Errorf("%d devices seen, per worker %v", len(seen), per)
	}
}

// TestBootstrap: a NATS stack is handed out with the gateway's streams already made (the
// first MQTT connection of the account, which can fail on a new cluster, is not left to a
// device), and Bootstrap reports a bad URL at once and a refused login when ctx ends.
func TestBootstrap(t *testing.T) {
	t.Parallel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s.NATSConn(topics.RoleConsumer, "inspect")
	nc, err := nats.Connect(c.URLs[0], nats.UserInfo(c.Username, c.Password), nats.Name(c.Name), nats.CustomInboxPrefix("_INBOX."+c.Username))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Stream(ctx, natsbus.MQTTStream); err != nil {
		t.Fatalf("stream %s right after the stack started: %v", natsbus.MQTTStream, err)
	}

	if err := natsbus.Bootstrap(ctx, c, "http://127.0.0.1:1"); err == nil || ctx.Err() != nil {
		t.Fatalf("bad URL: %v (ctx %v)", err, ctx.Err())
	}
	wrong := c
	wrong.Password = "wrong-" + wrong.Password
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	err = natsbus.Bootstrap(short, wrong, s.Cluster().Nodes()[1].MQTTURL())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refused login: %v, want the deadline", err)
	}
}
