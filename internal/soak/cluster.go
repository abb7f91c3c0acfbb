// Package soak runs clipgate under load with faults injected at random, and holds the
// restartable in-process stack (Cluster) that the soak and the fault-injection tests use:
// unlike clipgatetest.Stack, each of its parts (broker, local cloud, token workers) can
// be stopped and started again in place while the rest keeps running.
package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/faultnet"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of ClusterOptions.
const (
	DefaultBucket  = "clips"
	DefaultPrefix  = "clips/"
	DefaultWorkers = 2
	// RoleName is the local cloud role the token workers assume for devices.
	RoleName = "clipgate-device"
)

// ClusterOptions configures a Cluster.
type ClusterOptions struct {
	// Dir holds the local cloud's data, the broker's sessions and the devices' state
	// directories (devices/{id}). Required; the caller removes it.
	Dir string
	// Workers is the number of token workers started; 0 means DefaultWorkers.
	Workers int
	// Bucket and Prefix: default DefaultBucket and DefaultPrefix.
	Bucket, Prefix string
	// WorkerConfig, when set, adjusts each token worker's configuration before it starts
	// (e.g. to put a tap in front of OSS by changing OSS.Endpoint).
	WorkerConfig func(*tokenworker.Config)
	// BrokerConfig, when set, adjusts the broker's configuration at every start.
	BrokerConfig func(*broker.Config)
	// Logger receives every component's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

// Cluster is clipgate in this process — the local cloud (OSS and STS), the broker with
// persistent sessions (pebble in Dir/broker) and token workers — with each part behind a
// faultnet proxy, so that a part restarted on a new port keeps its address: clients keep
// their URLs and endpoints (and their issued credentials) across restarts. Its methods
// are safe for concurrent use.
type Cluster struct {
	opts     ClusterOptions
	log      zerolog.Logger
	scheme   topics.Scheme
	fleet    *identity.Keyring
	admin    accessKey
	caller   accessKey
	roleARN  string
	pw       map[string]string // service role -> password
	accounts *identity.ServiceAccounts
	revs     *identity.Revocations
	replay   *identity.ReplayCache

	mqttProxy, ossProxy, stsProxy *faultnet.Proxy

	mu      sync.Mutex
	closed  bool
	cloud   *localcloud.Server
	broker  *broker.Broker
	workers []*tokenworker.Worker // nil where stopped
	region  string
}

type accessKey struct{ ID, Secret string }

// ErrClosed is returned by the methods of a closed Cluster.
var ErrClosed = errors.New("soak: cluster closed")

// serviceRoles are the service accounts; each role's username is the role itself.
var serviceRoles = []string{topics.RoleTokenWorker.String(), topics.RoleConsumer.String(), topics.RoleAdmin.String()}

// StartCluster starts a cluster. ctx bounds the start (the workers' first connection).
// On error nothing is left running.
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	if opts.Dir == "" {
		return nil, errors.New("soak: ClusterOptions.Dir is required")
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("soak: Workers %d is negative", opts.Workers)
	}
	if opts.Workers == 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := policy.ValidateLocation(opts.Bucket, opts.Prefix); err != nil {
		return nil, fmt.Errorf("soak: bucket %q / prefix %q: %w", opts.Bucket, opts.Prefix, err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{
		opts:    opts,
		log:     opts.Logger,
		scheme:  topics.Default(),
		roleARN: "acs:ram::" + localcloud.DefaultAccountID + ":role/" + RoleName,
		pw:      make(map[string]string),
		revs:    identity.NewRevocations(),
		replay:  identity.NewReplayCache(tokenworker.DefaultClockWindow, 1<<20),
	}
	if c.fleet, err = identity.NewFleetKeyring(); err != nil {
		return nil, err
	}
	c.admin = accessKey{"LTAIadmin" + randomHex(8), randomHex(16)}
	c.caller = accessKey{"LTAIworker" + randomHex(8), randomHex(16)}
	for _, role := range serviceRoles {
		c.pw[role] = randomHex(16)
	}
	if c.accounts, err = writeAccounts(filepath.Join(opts.Dir, "service-accounts.yaml"), c.pw); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	// The proxies start pointing nowhere useful; each part retargets its proxy when it starts.
	for _, p := range []**faultnet.Proxy{&c.mqttProxy, &c.ossProxy, &c.stsProxy} {
		if *p, err = faultnet.Listen("127.0.0.1:1"); err != nil {
			return nil, err
		}
	}
	if err := c.StartCloud(); err != nil {
		return nil, err
	}
	if err := c.StartBroker(); err != nil {
		return nil, err
	}
	for range opts.Workers {
		if _, err := c.StartWorker(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeAccounts writes the broker's service accounts file (bcrypt at its minimum cost:
// the passwords are random) and loads it.
func writeAccounts(path string, pw map[string]string) (*identity.ServiceAccounts, error) {
	type account struct {
		Username     string `yaml:"username"`
		PasswordHash string `yaml:"passwordHash"`
		Role         string `yaml:"role"`
	}
	var f struct {
		Accounts []account `yaml:"accounts"`
	}
	for _, role := range serviceRoles {
		h, err := bcrypt.GenerateFromPassword([]byte(pw[role]), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		f.Accounts = append(f.Accounts, account{Username: role, PasswordHash: string(h), Role: role})
	}
	data, err := yaml.Marshal(&f)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	return identity.LoadServiceAccounts(path)
}

// StartCloud starts the local cloud over Dir/localcloud (objects and multipart uploads of
// an earlier run are still there) and points the OSS and STS proxies at it.
func (c *Cluster) StartCloud() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.cloud != nil {
		return errors.New("soak: the local cloud is running")
	}
	b := c.opts.Bucket
	rolePolicy, _ := json.Marshal(map[string]any{"Version": "1", "Statement": []any{map[string]any{
		"Effect": "Allow", "Action": []string{"oss:*"},
		"Resource": []string{"acs:oss:*:*:" + b, "acs:oss:*:*:" + b + "/*"},
	}}})
	callerPolicy, _ := json.Marshal(map[string]any{"Version": "1", "Statement": []any{map[string]any{
		"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": c.roleARN,
	}}})
	cloud, err := localcloud.Start(localcloud.Config{
		OSSAddr: "127.0.0.1:0",
		STSAddr: "127.0.0.1:0",
		DataDir: filepath.Join(c.opts.Dir, "localcloud"),
		Keys: []localcloud.AccessKey{
			{ID: c.admin.ID, Secret: c.admin.Secret},
			{ID: c.caller.ID, Secret: c.caller.Secret, Policy: string(callerPolicy)},
		},
		Roles:   []localcloud.Role{{Name: RoleName, Policy: string(rolePolicy), MaxSessionDuration: localcloud.MaxMaxSessionDuration}},
		Buckets: []string{b},
		Logger:  c.log.With().Str("component", "localcloud").Logger(),
	})
	if err != nil {
		return fmt.Errorf("soak: local cloud: %w", err)
	}
	c.cloud, c.region = cloud, cloud.Region()
	c.ossProxy.SetTarget(hostPort(cloud.OSSEndpoint()))
	c.stsProxy.SetTarget(cloud.STSEndpoint())
	return nil
}

// StopCloud stops the local cloud (requests in flight finish, up to localcloud's grace
// period); until StartCloud, connections through its proxies are closed at once.
func (c *Cluster) StopCloud() error {
	c.mu.Lock()
	cloud := c.cloud
	c.cloud = nil
	c.mu.Unlock()
	if cloud == nil {
		return errors.New("soak: the local cloud is not running")
	}
	return cloud.Close()
}

// RestartCloud stops and starts the local cloud.
func (c *Cluster) RestartCloud() error {
	if err := c.StopCloud(); err != nil {
		return err
	}
	return c.StartCloud()
}

// StartBroker starts the broker over Dir/broker (persistent sessions and queued messages
// of an earlier run are restored) and points the MQTT proxy at it.
func (c *Cluster) StartBroker() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.broker != nil {
		return errors.New("soak: the broker is running")
	}
	bl := c.log // the broker names itself ("component") in its lines
	cfg := broker.Config{
		Addr:            "127.0.0.1:0",
		HTTPAddr:        "none",
		DataDir:         filepath.Join(c.opts.Dir, "broker"),
		TopicRoot:       c.scheme.Root(),
		ConnectKeys:     c.fleet.ConnectRoots(),
		ServiceAccounts: c.accounts,
		Revocations:     c.revs,
		Logger:          &bl,
	}
	if c.opts.BrokerConfig != nil {
		c.opts.BrokerConfig(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if err := b.Start(); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	c.broker = b
	c.mqttProxy.SetTarget(dialAddr(b.Addr()))
	return nil
}

// StopBroker stops the broker: every client is disconnected and the session store is
// closed. Until StartBroker, connections through the MQTT proxy are closed at once.
func (c *Cluster) StopBroker() error {
	c.mu.Lock()
	b := c.broker
	c.broker = nil
	c.mu.Unlock()
	if b == nil {
		return errors.New("soak: the broker is not running")
	}
	return b.Close()
}

// RestartBroker stops and starts the broker.
func (c *Cluster) RestartBroker() error {
	if err := c.StopBroker(); err != nil {
		return err
	}
	return c.StartBroker()
}

// BrokerStats returns the running broker's counters (zero while it is stopped: they
// start again from zero at every start).
func (c *Cluster) BrokerStats() broker.Stats {
	c.mu.Lock()
	b := c.broker
	c.mu.Unlock()
	if b == nil {
		return broker.Stats{}
	}
	return b.Stats()
}

// StartWorker starts one more token worker (it connects through the MQTT proxy) and
// returns its index. ctx bounds its first connection.
func (c *Cluster) StartWorker(ctx context.Context) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	n := len(c.workers)
	c.workers = append(c.workers, nil) // reserve the index
	region := c.region
	c.mu.Unlock()
	cfg := tokenworker.Config{
		BrokerURL:   c.BrokerURL(),
		Username:    topics.RoleTokenWorker.String(),
		Password:    c.pw[topics.RoleTokenWorker.String()],
		ClientID:    broker.ServiceClientID(topics.RoleTokenWorker.String(), fmt.Sprintf("w%d-%s", n, randomHex(4))),
		Topics:      c.scheme,
		FleetKeys:   c.fleet,
		Revocations: c.revs,
		Replay:      c.replay,
		STS: tokenworker.STSConfig{
			Endpoint:        c.stsProxy.Addr(),
			Scheme:          "http",
			Region:          region,
			AccessKeyID:     c.caller.ID,
			AccessKeySecret: c.caller.Secret,
			RoleARN:         c.roleARN,
		},
		OSS: protocol.OSSInfo{
			Endpoint: c.OSSEndpoint(),
			Region:   region,
			Bucket:   c.opts.Bucket,
			Prefix:   c.opts.Prefix,
		},
		Logger: c.log, // the worker names itself and its client ID in its lines
	}
	if c.opts.WorkerConfig != nil {
		c.opts.WorkerConfig(&cfg)
	}
	w, err := tokenworker.New(cfg)
	if err == nil {
		if err = w.Start(ctx); err != nil {
			w.Close()
		}
	}
	if err != nil {
		return 0, fmt.Errorf("soak: token worker %d: %w", n, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		w.Close()
		return 0, ErrClosed
	}
	c.workers[n] = w
	return n, nil
}

// StopWorker stops token worker i (0-based, in start order).
func (c *Cluster) StopWorker(i int) error {
	c.mu.Lock()
	if i < 0 || i >= len(c.workers) || c.workers[i] == nil {
		c.mu.Unlock()
		return fmt.Errorf("soak: no running token worker %d", i)
	}
	w := c.workers[i]
	c.workers[i] = nil
	c.mu.Unlock()
	return w.Close()
}

// RunningWorkers returns the indices of the running token workers.
func (c *Cluster) RunningWorkers() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var idx []int
	for i, w := range c.workers {
		if w != nil {
			idx = append(idx, i)
		}
	}
	return idx
}

// WorkerStats returns the counters of token worker i, or false if it is not running.
func (c *Cluster) WorkerStats(i int) (tokenworker.Stats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.workers) || c.workers[i] == nil {
		return tokenworker.Stats{}, false
	}
	return c.workers[i].Stats(), true
}

// Close stops the workers, the broker, the local cloud and the proxies. It is safe to
// call more than once. Dir is left for the caller.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	workers, b, cloud := c.workers, c.broker, c.cloud
	c.workers, c.broker, c.cloud = nil, nil, nil
	c.mu.Unlock()
	var errs []error
	for i := len(workers) - 1; i >= 0; i-- {
		if workers[i] != nil {
			errs = append(errs, workers[i].Close())
		}
	}
	if b != nil {
		errs = append(errs, b.Close())
	}
	if cloud != nil {
		errs = append(errs, cloud.Close())
	}
	for _, p := range []*faultnet.Proxy{c.mqttProxy, c.ossProxy, c.stsProxy} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// BrokerURL is the MQTT URL of the broker's proxy, "tcp://127.0.0.1:PORT"; it stays the
// same across broker restarts.
func (c *Cluster) BrokerURL() string { return "tcp://" + c.mqttProxy.Addr() }

// BrokerAddr is the address of the broker's proxy, for another proxy to forward to.
func (c *Cluster) BrokerAddr() string { return c.mqttProxy.Addr() }

// OSSEndpoint is the local OSS behind its proxy, "http://127.0.0.1:PORT": the endpoint
// the token workers hand to devices.
func (c *Cluster) OSSEndpoint() string { return "http://" + c.ossProxy.Addr() }

// Region is the local cloud's region.
func (c *Cluster) Region() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.region
}

// Bucket returns the bucket name.
func (c *Cluster) Bucket() string { return c.opts.Bucket }

// Prefix returns the global key prefix.
func (c *Cluster) Prefix() string { return c.opts.Prefix }

// Topics returns the topic scheme.
func (c *Cluster) Topics() topics.Scheme { return c.scheme }

// Dir returns the cluster's directory.
func (c *Cluster) Dir() string { return c.opts.Dir }

// MultipartDir returns the local cloud's directory of unfinished multipart uploads of
// the bucket: one subdirectory per upload (the local cloud's layout).
func (c *Cluster) MultipartDir() string {
	return filepath.Join(c.opts.Dir, "localcloud", "oss", c.opts.Bucket, "uploads")
}

// DeviceKey returns the device key of deviceID, derived from the current fleet key.
func (c *Cluster) DeviceKey(deviceID string) *identity.DeviceKey {
	k, err := identity.NewDeviceKey(c.fleet, deviceID)
	if err != nil {
		panic(err) // the soak makes its device IDs
	}
	return k
}

// DeviceConfig returns a device kit configuration for deviceID: the broker's proxy, the
// device key and the state directory Dir/devices/{deviceID}, with the cluster's logger.
func (c *Cluster) DeviceConfig(deviceID string) devicekit.Config {
	state := filepath.Join(c.opts.Dir, "devices", "invalid-device-id")
	if deviceid.Valid(deviceID) {
		state = filepath.Join(c.opts.Dir, "devices", deviceID)
	}
	return devicekit.Config{
		BrokerURL: c.BrokerURL(),
		DeviceID:  deviceID,
		DeviceKey: c.DeviceKey(deviceID),
		StateDir:  state,
		Topics:    c.scheme,
		Logger:    c.log.With().Str("component", "device").Logger(),
	}
}

// ServiceAccount returns the MQTT username and password for role topics.RoleTokenWorker,
// RoleConsumer or RoleAdmin (empty for another role). Service client IDs must not look
// like device IDs: use broker.ServiceClientID.
func (c *Cluster) ServiceAccount(role topics.Role) (username, password string) {
	pw, ok := c.pw[role.String()]
	if !ok || role == topics.RoleDevice {
		return "", ""
	}
	return role.String(), pw
}

// OSSClient returns an OSS client with the admin's full-access key, through the proxy.
func (c *Cluster) OSSClient() (*oss.Client, error) {
	return oss.New(c.OSSEndpoint(), c.admin.ID, c.admin.Secret,
		oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region(c.Region()),
		oss.Timeout(10, 60))
}

// hostPort returns the host:port of an "http://host:port" endpoint.
func hostPort(endpoint string) string {
	if i := len("http://"); len(endpoint) > i && endpoint[:i] == "http://" {
		return endpoint[i:]
	}
	return endpoint
}

// dialAddr turns a listener address into one to dial (an unspecified host becomes
// 127.0.0.1).
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
