package inproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/faultnet"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Options.
const (
	DefaultBucket = "clips"
	DefaultPrefix = "clips/"
	// RoleName is the localcloud role the token workers assume for devices.
	RoleName = "clipgate-device"
	// LogEnv set to "1" sends the stack's logs to stderr (console format) when
	// Options.Logger is the zero Logger.
	LogEnv = "CLIPGATE_TEST_LOG"
	// startWorkerTimeout bounds StartWorker, which takes no context.
	startWorkerTimeout = 30 * time.Second
)

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
	// WorkerConfig, when set, adjusts each token worker's configuration before it starts.
	WorkerConfig func(*tokenworker.Config)
	// BrokerConfig, when set, adjusts the broker's configuration before it starts.
	BrokerConfig func(*broker.Config)
	// CalloutConfig, when set, adjusts each auth-callout instance's configuration (Engine
	// "nats") before it starts.
	CalloutConfig func(*natsauth.Config)
	// BcryptCost is the cost of the service account hashes; 0 means bcrypt's minimum, for
	// tests, whose many service logins stay cheap. A stack people use (devstack) sets
	// bcrypt.DefaultCost (10), as production must.
	BcryptCost int
	// Logger receives every component's logs. The zero Logger discards them, unless the
	// environment variable CLIPGATE_TEST_LOG is "1": then they go to stderr.
	Logger zerolog.Logger
	// Engine is EngineMochi (the default: the embedded mochi broker) or EngineNATS: a
	// NATS JetStream cluster of NATSNodes nodes (default 3) in this process, with the auth
	// callout (two instances deciding with the broker's code) and the token workers as a
	// NATS queue group. Consumer is MQTT-only; use EventsSource on NATS.
	Engine    string
	NATSNodes int
	// NATSBinary, when set, runs each NATS node as a nats-server process of this
	// executable (natscluster.Options.Binary), so that tests can SIGKILL one.
	NATSBinary string
	// Listen addresses; each defaults to "127.0.0.1:0" (a random loopback port).
	OSSAddr, STSAddr, MQTTAddr, HTTPAddr string
	// Restartable puts the broker, OSS and STS each behind a loopback proxy
	// (internal/faultnet) that keeps its address, so that StopBroker, StartBroker,
	// StopCloud and StartCloud restart a part in place while the rest keeps running:
	// clients keep their URLs and endpoints, and issued credentials stay valid. The
	// proxies take random loopback ports; the parts behind them listen on the addresses
	// above, anew at each start. Without it, the parts cannot be stopped alone.
	Restartable bool
}

// Stack is a running clipgate: the local cloud (OSS and STS), the MQTT broker and token
// workers, all in this process. Its methods are safe for concurrent use.
type Stack struct {
	opts    Options
	dir     string
	tempDir bool
	log     zerolog.Logger
	scheme  topics.Scheme
	prefix  string

	fleet    *identity.Keyring // the workers' fleet keys ({Dir}/fleet.keys)
	connect  *identity.Keyring // the broker's and callout's connect roots ({Dir}/connect.keys)
	keys     *stackKeys
	accounts *identity.ServiceAccounts
	revs     *identity.Revocations // the broker's: the devices of revoked
	wrevs    *identity.Revocations // the workers': revoked and wrevoked
	nats     *natsStack            // Engine "nats"
	roleARN  string

	// What clients are given; fixed at Start (behind the proxies when Restartable).
	brokerURL, ossEndpoint, stsEndpoint, region string
	// The proxies of a Restartable stack; nil otherwise.
	mqttProxy, ossProxy, stsProxy *faultnet.Proxy

	mu        sync.Mutex
	closed    bool
	cloud     *localcloud.Server    // nil while stopped
	broker    *broker.Broker        // nil while stopped
	revoked   map[string]bool       // Revoke
	wrevoked  map[string]bool       // RevokeAtWorkers
	workers   []*tokenworker.Worker // nil where stopped
	replay    *identity.ReplayCache // shared by the workers, so a replay cannot slip past
	consumers map[*Consumer]struct{}
}

// ErrClosed is returned by the methods of a closed Stack or Consumer.
var ErrClosed = errors.New("clipgatetest: closed")

// Start starts a stack: the local cloud with the bucket, an admin key and a role for the
// devices, the broker, and the token workers. ctx bounds the start only (the workers'
// first connection); the stack runs until Close. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	s := &Stack{opts: opts, revoked: map[string]bool{}, wrevoked: map[string]bool{}, consumers: map[*Consumer]struct{}{}}
	if err := s.applyDefaults(); err != nil {
		return nil, err
	}
	if s.opts.Dir == "" {
		if s.dir, err = os.MkdirTemp("", "clipgatetest-"); err != nil {
			return nil, fmt.Errorf("clipgatetest: %w", err)
		}
		s.tempDir = true
	} else {
		if s.dir, err = filepath.Abs(s.opts.Dir); err != nil {
			return nil, fmt.Errorf("clipgatetest: Dir: %w", err)
		}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return nil, fmt.Errorf("clipgatetest: Dir: %w", err)
		}
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if s.fleet, s.keys, err = loadOrCreateKeys(s.dir); err != nil {
		return nil, fmt.Errorf("clipgatetest: %w", err)
	}
	s.connect = s.fleet.ConnectRoots()
	if s.accounts, err = writeServiceAccounts(filepath.Join(s.dir, serviceAccountsFile), s.keys, s.opts.BcryptCost); err != nil {
		return nil, fmt.Errorf("clipgatetest: %w", err)
	}
	s.revs, s.wrevs = identity.NewRevocations(), identity.NewRevocations()
	s.roleARN = "acs:ram::" + localcloud.DefaultAccountID + ":role/" + RoleName

	if s.opts.Restartable {
		// The proxies start pointing nowhere; each part retargets its proxy when it starts.
		for _, p := range []**faultnet.Proxy{&s.mqttProxy, &s.ossProxy, &s.stsProxy} {
			if *p, err = faultnet.Listen("127.0.0.1:1"); err != nil {
				return nil, fmt.Errorf("clipgatetest: %w", err)
			}
		}
	}
	if err := s.StartCloud(); err != nil {
		return nil, err
	}
	if s.opts.Engine == EngineNATS {
		if err := s.startNATSBroker(ctx); err != nil {
			return nil, err
		}
	} else if err := s.StartBroker(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.region = s.cloud.Region()
	s.ossEndpoint, s.stsEndpoint = s.cloud.OSSEndpoint(), s.cloud.STSEndpoint()
	if s.nats != nil {
		s.brokerURL = s.nats.cluster.Nodes()[0].MQTTURL()
	} else {
		s.brokerURL = "tcp://" + dialAddr(s.broker.Addr())
	}
	s.mu.Unlock()
	if s.opts.Restartable {
		s.ossEndpoint, s.stsEndpoint = "http://"+s.ossProxy.Addr(), s.stsProxy.Addr()
		s.brokerURL = "tcp://" + s.mqttProxy.Addr()
	}

	for range s.opts.Workers {
		if _, err := s.startWorker(ctx); err != nil {
			return nil, err
		}
	}
	s.log.Info().Str("dir", s.dir).Str("mqtt", s.BrokerURL()).Str("oss", s.OSSEndpoint()).
		Str("sts", s.STSEndpoint()).Int("workers", s.opts.Workers).Msg("clipgatetest stack started")
	return s, nil
}

// New starts a stack for a test or benchmark and closes it when the test ends (t.Cleanup).
// It fails the test at once if the stack does not start within a minute.
func New(t testing.TB, opts Options) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("clipgatetest: close: %v", err)
		}
	})
	return s
}

func (s *Stack) applyDefaults() error {
	o := &s.opts
	if o.Workers < 0 {
		return fmt.Errorf("clipgatetest: Workers %d is negative", o.Workers)
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	switch o.Engine {
	case "":
		o.Engine = EngineMochi
	case EngineMochi, EngineNATS:
	default:
		return fmt.Errorf("clipgatetest: Engine %q: want %q or %q", o.Engine, EngineMochi, EngineNATS)
	}
	switch {
	case o.NoPrefix && o.Prefix != "":
		return fmt.Errorf("clipgatetest: NoPrefix with Prefix %q", o.Prefix)
	case o.NoPrefix:
		s.prefix = ""
	case o.Prefix == "":
		s.prefix = DefaultPrefix
	default:
		s.prefix = o.Prefix
	}
	// The token workers check bucket and prefix with the same rule; checking here gives
	// the error before anything starts.
	if err := policy.ValidateLocation(o.Bucket, s.prefix); err != nil {
		return fmt.Errorf("clipgatetest: bucket %q / prefix %q: %w", o.Bucket, s.prefix, err)
	}
	s.scheme = o.Topics
	if o.STSRate < 0 {
		return fmt.Errorf("clipgatetest: STSRate %v is negative", o.STSRate)
	}
	for _, a := range []*string{&o.OSSAddr, &o.STSAddr, &o.MQTTAddr, &o.HTTPAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	s.log = o.Logger
	if reflect.ValueOf(o.Logger).IsZero() {
		s.log = zerolog.Nop()
		if os.Getenv(LogEnv) == "1" {
			s.log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).
				With().Timestamp().Logger()
		}
	}
	return nil
}

// StartCloud starts the local cloud with the admin key, the workers' key (allowed only to
// assume the device role) and the device role (anything in the bucket; the workers'
// session policies narrow it to one device's prefix), over {Dir}/localcloud: the objects
// and multipart uploads of an earlier start are still there. Start calls it; call it
// again after StopCloud (Options.Restartable).
func (s *Stack) StartCloud() error {
	cfg, err := s.cloudConfig()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.cloud != nil {
		return errors.New("clipgatetest: the local cloud is running")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	cloud, err := localcloud.Start(cfg)
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	s.cloud = cloud
	if s.opts.Restartable {
		_ = s.ossProxy.SetTarget(hostPort(cloud.OSSEndpoint()))
		_ = s.stsProxy.SetTarget(cloud.STSEndpoint())
	}
	return nil
}

// cloudConfig is the local cloud's configuration.
func (s *Stack) cloudConfig() (localcloud.Config, error) {
	b := s.opts.Bucket
	rolePolicy, err := json.Marshal(map[string]any{"Version": "1", "Statement": []any{map[string]any{
		"Effect": "Allow", "Action": []string{"oss:*"},
		"Resource": []string{"acs:oss:*:*:" + b, "acs:oss:*:*:" + b + "/*"},
	}}})
	if err != nil {
		return localcloud.Config{}, err
	}
	callerPolicy, err := json.Marshal(map[string]any{"Version": "1", "Statement": []any{map[string]any{
		"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": s.roleARN,
	}}})
	if err != nil {
		return localcloud.Config{}, err
	}
	return localcloud.Config{
		OSSAddr:   s.opts.OSSAddr,
		STSAddr:   s.opts.STSAddr,
		DataDir:   filepath.Join(s.dir, localcloudDir),
		AccountID: localcloud.DefaultAccountID,
		Keys: []localcloud.AccessKey{
			{ID: s.keys.OSSAdmin.ID, Secret: s.keys.OSSAdmin.Secret},
			{ID: s.keys.STSCaller.ID, Secret: s.keys.STSCaller.Secret, Policy: string(callerPolicy)},
		},
		Roles:   []localcloud.Role{{Name: RoleName, Policy: string(rolePolicy), MaxSessionDuration: localcloud.MaxMaxSessionDuration}},
		Buckets: []string{b},
		STSRate: s.opts.STSRate,
		Now:     s.opts.Now,
		Logger:  s.log.With().Str("component", "localcloud").Logger(),
	}, nil
}

// StopCloud stops the local cloud (requests in flight finish, up to localcloud's grace
// period); until StartCloud, connections through its proxies are closed at once. It
// needs Options.Restartable.
func (s *Stack) StopCloud() error {
	if !s.opts.Restartable {
		return errNotRestartable
	}
	s.mu.Lock()
	cloud := s.cloud
	s.cloud = nil
	s.mu.Unlock()
	if cloud == nil {
		return errors.New("clipgatetest: the local cloud is not running")
	}
	return cloud.Close()
}

// StartBroker starts the broker (Options.BrokerConfig applied) and points the MQTT proxy
// at it. Start calls it; call it again after StopBroker (Options.Restartable). The
// broker's sessions survive a restart when BrokerConfig gives it a DataDir.
func (s *Stack) StartBroker() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.broker != nil {
		return errors.New("clipgatetest: the broker is running")
	}
	b, err := broker.New(s.brokerConfig())
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	if err := b.Start(); err != nil {
		// A failed Start has already stopped what it started (and Close would stop it again).
		return fmt.Errorf("clipgatetest: %w", err)
	}
	s.broker = b
	if s.opts.Restartable {
		_ = s.mqttProxy.SetTarget(dialAddr(b.Addr()))
	}
	return nil
}

// brokerConfig is the broker's configuration, after Options.BrokerConfig.
func (s *Stack) brokerConfig() broker.Config {
	bl := s.log // the broker names itself ("component") in its lines
	cfg := broker.Config{
		Addr:            s.opts.MQTTAddr,
		HTTPAddr:        s.opts.HTTPAddr,
		TopicRoot:       s.scheme.Root(),
		ConnectKeys:     s.connect,
		ServiceAccounts: s.accounts,
		Revocations:     s.revs,
		Logger:          &bl,
	}
	if s.opts.BrokerConfig != nil {
		s.opts.BrokerConfig(&cfg)
	}
	return cfg
}

// startNATSBroker starts the NATS engine (Options.Engine "nats"): a broker that is never
// started, only deciding logins and ACLs for the auth callout, and the cluster.
func (s *Stack) startNATSBroker(ctx context.Context) error {
	cfg := s.brokerConfig()
	cfg.HTTPAddr = "none"
	b, err := broker.New(cfg)
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	s.mu.Lock()
	s.broker = b
	s.mu.Unlock()
	return s.startNATS(ctx)
}

// StopBroker stops the broker: every client is disconnected and its session store is
// closed. Until StartBroker, connections through the MQTT proxy are closed at once. It
// needs Options.Restartable.
func (s *Stack) StopBroker() error {
	if !s.opts.Restartable {
		return errNotRestartable
	}
	s.mu.Lock()
	b := s.broker
	s.broker = nil
	s.mu.Unlock()
	if b == nil {
		return errors.New("clipgatetest: the broker is not running")
	}
	return b.Close()
}

// RestartCloud stops and starts the local cloud (Options.Restartable).
func (s *Stack) RestartCloud() error {
	if err := s.StopCloud(); err != nil {
		return err
	}
	return s.StartCloud()
}

// RestartBroker stops and starts the broker (Options.Restartable).
func (s *Stack) RestartBroker() error {
	if err := s.StopBroker(); err != nil {
		return err
	}
	return s.StartBroker()
}

var errNotRestartable = errors.New("clipgatetest: a part can be stopped alone only with Options.Restartable")

// workerConfig is the configuration of a new token worker.
func (s *Stack) workerConfig(n int) tokenworker.Config {
	cfg := tokenworker.Config{
		BrokerURL:   s.BrokerURL(),
		Username:    topics.RoleTokenWorker.String(),
		Password:    s.keys.Passwords[topics.RoleTokenWorker.String()],
		ClientID:    broker.ServiceClientID(topics.RoleTokenWorker.String(), fmt.Sprintf("w%d-%s", n, mustHex(4))),
		Topics:      s.scheme,
		FleetKeys:   s.fleet,
		Revocations: s.wrevs,
		STS: tokenworker.STSConfig{
			Endpoint:        s.stsEndpoint,
			Scheme:          "http",
			Region:          s.region,
			AccessKeyID:     s.keys.STSCaller.ID,
			AccessKeySecret: s.keys.STSCaller.Secret,
			RoleARN:         s.roleARN,
		},
		OSS: clipgate.OSSInfo{
			Endpoint: s.ossEndpoint,
			Region:   s.region,
			Bucket:   s.opts.Bucket,
			Prefix:   s.prefix,
		},
		Logger: s.log, // the worker names itself and its client ID in its lines
	}
	if s.nats != nil {
		if tr, err := s.natsWorkerTransport(n); err == nil {
			cfg.Transport = tr
		}
	}
	if s.opts.WorkerConfig != nil {
		s.opts.WorkerConfig(&cfg)
	}
	return cfg
}

func mustHex(n int) string {
	h, err := randomHex(n)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return h
}

// startWorker starts one more token worker and returns its index.
func (s *Stack) startWorker(ctx context.Context) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	n := len(s.workers)
	cfg := s.workerConfig(n)
	if cfg.Replay == nil {
		if s.replay == nil {
			window := cfg.ClockWindow
			if window <= 0 {
				window = tokenworker.DefaultClockWindow
			}
			s.replay = identity.NewReplayCache(window, 1<<20)
		}
		cfg.Replay = s.replay
	}
	// The slot is reserved now so that indices stay stable under concurrent calls.
	s.workers = append(s.workers, nil)
	s.mu.Unlock()

	w, err := tokenworker.New(cfg)
	if err == nil {
		if err = w.Start(ctx); err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		return 0, fmt.Errorf("clipgatetest: token worker %d: %w", n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // Close ran meanwhile: it did not see this worker
		_ = w.Close()
		return 0, ErrClosed
	}
	s.workers[n] = w
	return n, nil
}

// StartWorker starts one more token worker in the shared-subscription group and returns
// its index (for StopWorker). It waits up to 30 seconds for the worker to subscribe.
func (s *Stack) StartWorker() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startWorkerTimeout)
	defer cancel()
	return s.startWorker(ctx)
}

// StartWorkerContext is StartWorker with ctx bounding the wait for the subscription.
func (s *Stack) StartWorkerContext(ctx context.Context) (int, error) { return s.startWorker(ctx) }

// StopWorker stops token worker i (0-based, in start order): it unsubscribes, answers what
// it had queued with "unavailable" and disconnects, so that the others take over.
func (s *Stack) StopWorker(i int) error {
	s.mu.Lock()
	if i < 0 || i >= len(s.workers) || s.workers[i] == nil {
		s.mu.Unlock()
		return fmt.Errorf("clipgatetest: no running token worker %d", i)
	}
	w := s.workers[i]
	s.workers[i] = nil
	s.mu.Unlock()
	return w.Close()
}

// Workers returns the number of running token workers.
func (s *Stack) Workers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.workers {
		if w != nil {
			n++
		}
	}
	return n
}

// RunningWorkers returns the indices of the running token workers, in start order.
func (s *Stack) RunningWorkers() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var idx []int
	for i, w := range s.workers {
		if w != nil {
			idx = append(idx, i)
		}
	}
	return idx
}

// WorkerStats returns the counters of token worker i, or false if it is not running.
func (s *Stack) WorkerStats(i int) (tokenworker.Stats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.workers) || s.workers[i] == nil {
		return tokenworker.Stats{}, false
	}
	return s.workers[i].Stats(), true
}

// Close stops the consumers, the token workers, the broker and the local cloud, in that
// order, and waits for each; then it removes the directory if Start made it. It is safe
// to call more than once.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	consumers := make([]*Consumer, 0, len(s.consumers))
	for c := range s.consumers {
		consumers = append(consumers, c)
	}
	workers, b, cloud := s.workers, s.broker, s.cloud
	s.workers, s.broker, s.cloud = nil, nil, nil
	s.mu.Unlock()

	var errs []error
	for _, c := range consumers {
		errs = append(errs, c.Close())
	}
	for i := len(workers) - 1; i >= 0; i-- {
		if workers[i] != nil {
			errs = append(errs, workers[i].Close())
		}
	}
	if b != nil {
		errs = append(errs, b.Close())
	}
	if s.nats != nil {
		s.nats.close()
	}
	if cloud != nil {
		errs = append(errs, cloud.Close())
	}
	for _, p := range []*faultnet.Proxy{s.mqttProxy, s.ossProxy, s.stsProxy} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	if s.tempDir {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clipgatetest: close: %w", err)
	}
	s.log.Info().Msg("clipgatetest stack stopped")
	return nil
}

// DeviceConfig returns a device kit configuration for deviceID on this stack: the broker
// URL (on NATS, a node chosen by the device ID, the others as FailoverURLs), the topic
// scheme, the device key derived from the current fleet key and a state directory
// {Dir}/devices/{deviceID}, with the stack's logger. Adjust the rest (timeouts, multipart
// sizes, clock) before devicekit.New. An invalid device ID is refused by devicekit.New.
func (s *Stack) DeviceConfig(deviceID string) devicekit.Config {
	state := filepath.Join(s.dir, devicesDir, "invalid-device-id")
	if deviceid.Valid(deviceID) { // never a path outside devices/
		state = filepath.Join(s.dir, devicesDir, deviceID)
	}
	urls := s.BrokerURLs()
	if len(urls) > 1 { // spread devices over the NATS nodes, the others as failover
		h := fnv.New32a()
		_, _ = h.Write([]byte(deviceID))
		i := int(h.Sum32() % uint32(len(urls)))
		urls = append(urls[i:], urls[:i]...)
	}
	return devicekit.Config{
		BrokerURL:    urls[0],
		FailoverURLs: urls[1:],
		DeviceID:     deviceID,
		DeviceKey:    s.DeviceKey(deviceID),
		StateDir:     state,
		Topics:       s.scheme,
		Logger:       s.log.With().Str("component", "devicekit").Logger(),
	}
}

// Kit starts a device kit for deviceID on the stack (DeviceConfig, adjusted by mod when
// set), connects it within ctx and closes it when the test ends. It fails the test at
// once on error.
func (s *Stack) Kit(t testing.TB, ctx context.Context, deviceID string, mod func(*devicekit.Config)) *devicekit.Kit {
	t.Helper()
	cfg := s.DeviceConfig(deviceID)
	if mod != nil {
		mod(&cfg)
	}
	k, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	if err := k.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return k
}

// DeviceKey returns the device key of deviceID, derived from the current fleet key (nil
// for an invalid device ID).
func (s *Stack) DeviceKey(deviceID string) *devicekit.DeviceKey {
	k, err := identity.NewDeviceKey(s.fleet, deviceID)
	if err != nil {
		return nil
	}
	return (*devicekit.DeviceKey)(k)
}

// FleetKeys returns the token workers' fleet keyring ({Dir}/fleet.keys). Set it only
// through RotateKeys, which keeps the broker's connect keys in step.
func (s *Stack) FleetKeys() *identity.Keyring { return s.fleet }

// RotateKeys rotates the fleet keys at now (identity.Keyring.Rotate): a new current key,
// the old one accepted until now+grace. The workers' fleet keys and the broker's connect
// roots change together, in place, and both files are rewritten.
func (s *Stack) RotateKeys(now time.Time, grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, err := s.fleet.Rotate(now, grace)
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	next, err := identity.NewKeyring(keys...)
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	// The broker first: a device rekeyed by a worker may reconnect with the new key at once.
	if err := s.connect.Set(next.ConnectRoots().Keys()); err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	if err := s.fleet.Set(keys); err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	if err := identity.WriteKeyring(filepath.Join(s.dir, fleetKeysFile), s.fleet); err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	if err := identity.WriteKeyring(filepath.Join(s.dir, connectKeysFile), s.connect); err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	return nil
}

// ConnectKeysFile and FleetKeysFile return the paths of the broker's key file (connect
// roots only) and of the token workers' fleet keyring.
func (s *Stack) ConnectKeysFile() string { return filepath.Join(s.dir, connectKeysFile) }

// FleetKeysFile returns the path of the token workers' fleet keyring.
func (s *Stack) FleetKeysFile() string { return filepath.Join(s.dir, fleetKeysFile) }

// Revoke adds deviceID to the revocation list that the broker and the token workers share:
// the broker disconnects the device now and refuses it from then on, and the workers
// answer its requests with "revoked". Credentials already issued stay valid until they
// expire, as with real STS.
func (s *Stack) Revoke(deviceID string) {
	s.setRevoked(s.revoked, deviceID, true)
	s.mu.Lock()
	b := s.broker
	s.mu.Unlock()
	if b != nil {
		b.DisconnectRevoked()
	}
}

// RevokeAtWorkers revokes deviceID at the token workers only: the broker still lets the
// device in, and the workers answer its credentials requests with "revoked", as when the
// workers learn of a revocation before the broker does.
func (s *Stack) RevokeAtWorkers(deviceID string) { s.setRevoked(s.wrevoked, deviceID, true) }

// Restore undoes Revoke and RevokeAtWorkers for deviceID.
func (s *Stack) Restore(deviceID string) {
	s.setRevoked(s.revoked, deviceID, false)
	s.setRevoked(s.wrevoked, deviceID, false)
}

// setRevoked adds deviceID to set or removes it, and sets the broker's list to revoked and
// the workers' to revoked and wrevoked.
func (s *Stack) setRevoked(set map[string]bool, deviceID string, revoked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if revoked {
		set[deviceID] = true
	} else {
		delete(set, deviceID)
	}
	ids := make([]string, 0, len(s.revoked)+len(s.wrevoked))
	for id := range s.revoked {
		ids = append(ids, id)
	}
	s.revs.Set(ids)
	for id := range s.wrevoked {
		if !s.revoked[id] {
			ids = append(ids, id)
		}
	}
	s.wrevs.Set(ids)
}

// OSSClient returns an aliyun-oss-go-sdk client with the admin's long-term key (full
// access to the bucket), path-style and V4-signed, to check what devices uploaded.
func (s *Stack) OSSClient() (*oss.Client, error) {
	return oss.New(s.OSSEndpoint(), s.keys.OSSAdmin.ID, s.keys.OSSAdmin.Secret,
		oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region(s.region))
}

// AdminBucket returns the bucket through OSSClient (the admin's full-access key), failing
// the test at once on error.
func (s *Stack) AdminBucket(t testing.TB) *oss.Bucket {
	t.Helper()
	c, err := s.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket(s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AdminKey returns the admin's long-term access key for the local OSS (any SDK).
func (s *Stack) AdminKey() (id, secret string) { return s.keys.OSSAdmin.ID, s.keys.OSSAdmin.Secret }

// ServiceAccount returns the MQTT username and password of the stack's service account
// for role topics.RoleTokenWorker, RoleConsumer, RoleAdmin or RoleConsole (the username is the role's
// name), or empty strings for another role. Service clients must use a client ID that is
// not of device-ID form, e.g. "consumer:x".
func (s *Stack) ServiceAccount(role topics.Role) (username, password string) {
	if role == topics.RoleDevice {
		return "", ""
	}
	pw, ok := s.keys.Passwords[role.String()]
	if !ok {
		return "", ""
	}
	return role.String(), pw
}

// Dir returns the stack's directory.
func (s *Stack) Dir() string { return s.dir }

// Bucket returns the bucket name.
func (s *Stack) Bucket() string { return s.opts.Bucket }

// Prefix returns the global key prefix ("" or ending in "/").
func (s *Stack) Prefix() string { return s.prefix }

// Region returns the local cloud's region.
func (s *Stack) Region() string { return s.region }

// Topics returns the topic scheme.
func (s *Stack) Topics() topics.Scheme { return s.scheme }

// RoleARN returns the ARN of the role the token workers assume.
func (s *Stack) RoleARN() string { return s.roleARN }

// BrokerURL returns the broker's MQTT URL, "tcp://127.0.0.1:PORT" (the proxy's when
// Restartable: the same across broker restarts).
func (s *Stack) BrokerURL() string { return s.brokerURL }

// BrokerURLs returns every MQTT URL devices may connect to: one per NATS node, or the
// broker's.
func (s *Stack) BrokerURLs() []string {
	if s.nats != nil {
		return s.nats.cluster.MQTTURLs()
	}
	return []string{s.BrokerURL()}
}

// BrokerTLSURL returns the running mochi broker's MQTT-over-TLS URL (ssl://127.0.0.1:PORT),
// or "" when BrokerConfig set no TLS listener (or the broker is stopped). It is not
// proxied.
func (s *Stack) BrokerTLSURL() string {
	s.mu.Lock()
	b := s.broker
	s.mu.Unlock()
	if b == nil || s.nats != nil {
		return ""
	}
	if a := b.TLSAddr(); a != "" {
		return "ssl://" + dialAddr(a)
	}
	return ""
}

// BrokerAddr returns the host:port of BrokerURL, for another proxy to forward to.
func (s *Stack) BrokerAddr() string { return strings.TrimPrefix(s.brokerURL, "tcp://") }

// BrokerHTTPAddr returns the address of the running broker's health and statistics
// endpoint ("" if BrokerConfig disabled it or the broker is stopped; it is not proxied, and
// changes at every start when HTTPAddr is a random port).
func (s *Stack) BrokerHTTPAddr() string {
	s.mu.Lock()
	b := s.broker
	s.mu.Unlock()
	if b == nil {
		return ""
	}
	return dialAddr(b.HTTPAddr())
}

// BrokerStats returns the running broker's counters (zero while it is stopped: they start
// again from zero at every start).
func (s *Stack) BrokerStats() broker.Stats {
	s.mu.Lock()
	b := s.broker
	s.mu.Unlock()
	if b == nil {
		return broker.Stats{}
	}
	return b.Stats()
}

// OSSEndpoint returns the local OSS endpoint, "http://127.0.0.1:PORT", the one the token
// workers hand to devices (the proxy's when Restartable).
func (s *Stack) OSSEndpoint() string { return s.ossEndpoint }

// STSEndpoint returns the local STS address, "127.0.0.1:PORT" (plain HTTP; the proxy's
// when Restartable).
func (s *Stack) STSEndpoint() string { return s.stsEndpoint }

// MultipartDir returns the local cloud's directory of the bucket's unfinished multipart
// uploads: one subdirectory per upload (the local cloud's layout).
func (s *Stack) MultipartDir() string {
	return filepath.Join(s.dir, localcloudDir, "oss", s.opts.Bucket, "uploads")
}

// hostPort returns the host:port of an "http://host:port" endpoint.
func hostPort(endpoint string) string { return strings.TrimPrefix(endpoint, "http://") }

// dialAddr turns a listener address into one to dial: an unspecified host (0.0.0.0, ::)
// becomes 127.0.0.1.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
