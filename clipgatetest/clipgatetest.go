package clipgatetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Options.
const (
	DefaultBucket = "clips"
	DefaultPrefix = "clips/"
	// RoleName is the local cloud's role the token workers assume for devices.
	RoleName = "clipgate-device"
	// LogEnv set to "1" sends the stack's logs to stderr (console format) when
	// Options.Logger is the zero Logger.
	LogEnv = "CLIPGATE_TEST_LOG"
)

// ErrClosed is returned by the methods of a closed Stack or Consumer.
var ErrClosed = errors.New("clipgatetest: closed")

// public turns the engine's closed error into ErrClosed.
func public(err error) error {
	if errors.Is(err, inproc.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Options configures a Stack. The zero value is a working stack: one token worker, bucket
// "clips", key prefix "clips/", random loopback ports, a temporary directory.
type Options struct {
	// Workers is the number of token workers started; 0 means 1.
	Workers int
	// Bucket is the OSS bucket (created in the local cloud); default DefaultBucket.
	Bucket string
	// Prefix is the global key prefix, empty or ending in "/": devices write under
	// {Prefix}{deviceID}/{yyyy}/{mm}/{dd}/. Empty means DefaultPrefix, unless NoPrefix.
	Prefix string
	// NoPrefix puts objects directly under {deviceID}/ (Prefix must then be empty).
	NoPrefix bool
	// Topics is the MQTT topic scheme (topics.New); the zero value is topics.Default().
	Topics topics.Scheme
	// Dir holds keys, the local cloud's objects and the devices' state. Empty means a new
	// temporary directory, removed by Close. A given directory is kept, and a stack started
	// again on it reuses its fleet key, access keys, passwords and objects (one stack at a
	// time per directory).
	Dir string
	// Now is the local cloud's clock (STS token issue and expiry, request signatures,
	// policy conditions); nil means time.Now. Moving it forward expires credentials.
	// The local cloud refuses requests signed more than 15 minutes away from it.
	Now func() time.Time
	// STSRate bounds AssumeRole calls per second in the local cloud; 0 is unlimited.
	STSRate float64
	// Logger receives every component's logs. The zero Logger discards them, unless the
	// environment variable CLIPGATE_TEST_LOG is "1": then they go to stderr.
	Logger zerolog.Logger
	// Listen addresses; each defaults to "127.0.0.1:0" (a random loopback port).
	OSSAddr, STSAddr, MQTTAddr, HTTPAddr string
}

func (o Options) inproc() inproc.Options {
	return inproc.Options{
		Workers: o.Workers, Bucket: o.Bucket, Prefix: o.Prefix, NoPrefix: o.NoPrefix,
		Topics: o.Topics, Dir: o.Dir, Now: o.Now, STSRate: o.STSRate, Logger: o.Logger,
		OSSAddr: o.OSSAddr, STSAddr: o.STSAddr, MQTTAddr: o.MQTTAddr, HTTPAddr: o.HTTPAddr,
	}
}

// Stack is a running clipgate: the local cloud (OSS and STS), the MQTT broker and token
// workers, all in this process. Its methods are safe for concurrent use.
type Stack struct{ s *inproc.Stack }

// Start starts a stack: the local cloud with the bucket, an admin key and a role for the
// devices, the broker, and the token workers. ctx bounds the start only (the workers'
// first connection); the stack runs until Close. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s, err := inproc.Start(ctx, opts.inproc())
	if err != nil {
		return nil, err
	}
	return &Stack{s}, nil
}

// New starts a stack for a test or benchmark and closes it when the test ends (t.Cleanup).
// It fails the test at once if the stack does not start within a minute.
func New(t testing.TB, opts Options) *Stack {
	t.Helper()
	return &Stack{inproc.New(t, opts.inproc())}
}

// Close stops the consumers, the token workers, the broker and the local cloud, in that
// order, and waits for each; then it removes the directory if Start made it. It is safe
// to call more than once.
func (s *Stack) Close() error { return s.s.Close() }

// DeviceConfig returns a device kit configuration for deviceID on this stack: the broker
// URL, the topic scheme, the device key derived from the current fleet key and a state directory
// {Dir}/devices/{deviceID}, with the stack's logger. Adjust the rest (timeouts, multipart
// sizes, clock) before devicekit.New. An invalid device ID is refused by devicekit.New.
func (s *Stack) DeviceConfig(deviceID string) devicekit.Config { return s.s.DeviceConfig(deviceID) }

// DeviceKey returns the device key of deviceID (its key ID, connect key and request key),
// derived from the current fleet key; nil for an invalid device ID.
func (s *Stack) DeviceKey(deviceID string) *devicekit.DeviceKey { return s.s.DeviceKey(deviceID) }

// Revoke adds deviceID to the revocation list that the broker and the token workers share:
// the broker disconnects the device now and refuses it from then on, and the workers
// answer its requests with clipgate.CodeRevoked. Credentials already issued stay valid
// until they expire, as with real STS.
func (s *Stack) Revoke(deviceID string) { s.s.Revoke(deviceID) }

// RevokeAtWorkers revokes deviceID at the token workers only: the broker still lets the
// device in, and the workers refuse its credentials requests with clipgate.CodeRevoked
// (the kit returns a *clipgate.AuthError), as when the workers learn of a revocation
// before the broker does.
func (s *Stack) RevokeAtWorkers(deviceID string) { s.s.RevokeAtWorkers(deviceID) }

// Restore undoes Revoke and RevokeAtWorkers for deviceID.
func (s *Stack) Restore(deviceID string) { s.s.Restore(deviceID) }

// StartWorker starts one more token worker in the shared-subscription group and returns
// its index (for StopWorker). It waits up to 30 seconds for the worker to subscribe.
func (s *Stack) StartWorker() (int, error) {
	i, err := s.s.StartWorker()
	return i, public(err)
}

// StopWorker stops token worker i (0-based, in start order): it unsubscribes, answers what
// it had queued with clipgate.CodeUnavailable and disconnects, so that the others take
// over.
func (s *Stack) StopWorker(i int) error { return s.s.StopWorker(i) }

// Workers returns the number of running token workers.
func (s *Stack) Workers() int { return s.s.Workers() }

// OSSClient returns an aliyun-oss-go-sdk client with the admin's long-term key (full
// access to the bucket), path-style and V4-signed, to check what devices uploaded.
func (s *Stack) OSSClient() (*oss.Client, error) { return s.s.OSSClient() }

// AdminKey returns the admin's long-term access key for the local OSS (any SDK).
func (s *Stack) AdminKey() (id, secret string) { return s.s.AdminKey() }

// ServiceAccount returns the MQTT username and password of the stack's service account
// for role topics.RoleTokenWorker, RoleConsumer, RoleAdmin or RoleConsole (the username is the role's
// name), or empty strings for another role. Service clients must use a client ID that is
// not of device-ID form, e.g. "consumer:x".
func (s *Stack) ServiceAccount(role topics.Role) (username, password string) {
	return s.s.ServiceAccount(role)
}

// Dir returns the stack's directory.
func (s *Stack) Dir() string { return s.s.Dir() }

// Bucket returns the bucket name.
func (s *Stack) Bucket() string { return s.s.Bucket() }

// Prefix returns the global key prefix ("" or ending in "/").
func (s *Stack) Prefix() string { return s.s.Prefix() }

// Region returns the local cloud's region.
func (s *Stack) Region() string { return s.s.Region() }

// Topics returns the topic scheme.
func (s *Stack) Topics() topics.Scheme { return s.s.Topics() }

// RoleARN returns the ARN of the role the token workers assume.
func (s *Stack) RoleARN() string { return s.s.RoleARN() }

// BrokerURL returns the broker's MQTT URL, "tcp://127.0.0.1:PORT".
func (s *Stack) BrokerURL() string { return s.s.BrokerURL() }

// BrokerHTTPAddr returns the address of the broker's health and statistics endpoint.
func (s *Stack) BrokerHTTPAddr() string { return s.s.BrokerHTTPAddr() }

// OSSEndpoint returns the local OSS endpoint, "http://127.0.0.1:PORT".
func (s *Stack) OSSEndpoint() string { return s.s.OSSEndpoint() }

// STSEndpoint returns the local STS address, "127.0.0.1:PORT" (plain HTTP).
func (s *Stack) STSEndpoint() string { return s.s.STSEndpoint() }

// Consumer is an MQTT client with the stack's consumer service account, subscribed to
// every device's upload events (clean session, QoS 1), decoding them strictly.
type Consumer struct{ c *inproc.Consumer }

// Consumer connects a consumer to the broker and subscribes it to the upload events of
// every device: in the shared-subscription group group (each event goes to one member of
// the group), or, when group is "", on its own (it gets every event). It returns once the
// subscription is acknowledged; ctx bounds that. Close it, or the stack's Close does.
func (s *Stack) Consumer(ctx context.Context, group string) (*Consumer, error) {
	c, err := s.s.Consumer(ctx, group)
	if err != nil {
		return nil, public(err)
	}
	return &Consumer{c}, nil
}

// Events returns the decoded upload events, in arrival order per device. The channel is
// closed by Close. Delivery is at least once: the same event ID may arrive again.
func (c *Consumer) Events() <-chan *clipgate.UploadEvent { return c.c.Events() }

// Next returns the next event, or ctx's error, or ErrClosed after Close.
func (c *Consumer) Next(ctx context.Context) (*clipgate.UploadEvent, error) {
	ev, err := c.c.Next(ctx)
	return ev, public(err)
}

// Malformed returns how many received messages were dropped because they were not valid
// upload events or named another device than their topic.
func (c *Consumer) Malformed() int64 { return c.c.Malformed() }

// Close disconnects the consumer, waits for its callbacks and closes Events. It is safe to
// call more than once.
func (c *Consumer) Close() error { return c.c.Close() }
