// Package natscluster runs a NATS JetStream cluster with clipgate's configuration inside
// the process (tests, devstack), from the same configuration text a production node
// reads (server.ProcessConfigFile), and renders that text.
package natscluster

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/topics"
)

//go:embed node.conf.tmpl
var nodeTemplate string

var tmpl = template.Must(template.New("node").Delims("[[", "]]").Parse(nodeTemplate))

// DefaultPartitions is the number of token-worker partitions of the mapping.
const DefaultPartitions = 16

// NodeConfig is what one node's configuration file says.
type NodeConfig struct {
	Name, Host                        string
	Port, ClusterPort, MQTTPort       int
	StoreDir                          string
	Routes                            []string // host:port of every node's cluster listener
	CalloutUser, CalloutPassword      string
	SysUser, SysPassword              string
	Issuer                            string // the callout issuer's account public key
	MappingSource, MappingDestination string
}

// Render returns the node's configuration text.
func Render(c NodeConfig) ([]byte, error) {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Options configures a Cluster.
type Options struct {
	// Nodes is the number of nodes; 0 means 3.
	Nodes int
	// Dir holds the configuration files and JetStream stores. Required.
	Dir string
	// Host is the listen address of every port; default 127.0.0.1.
	Host string
	// Topics is the topic scheme; Partitions the token-worker partitions (default
	// DefaultPartitions).
	Topics     topics.Scheme
	Partitions int
	// The callout's and the system account's users, and the callout issuer's public key.
	CalloutUser, CalloutPassword string
	SysUser, SysPassword         string
	Issuer                       string
	// Binary, when set, is a nats-server executable (go build
	// github.com/nats-io/nats-server/v2): each node then runs as its own process, which
	// Kill ends with SIGKILL. Leader queries (MetaLeader, StreamLeader) need in-process
	// nodes.
	Binary string
}

// Cluster is a running in-process cluster.
type Cluster struct {
	opts  Options
	mu    sync.Mutex
	nodes []*Node
}

// Node is one node.
type Node struct {
	Config NodeConfig
	File   string
	mu     sync.Mutex
	srv    *server.Server
	proc   *exec.Cmd     // with Options.Binary
	exited chan struct{} // closed when proc has been waited for
}

// Server returns the node's running server, or nil while it is down.
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// ClientURL is the node's NATS URL; MQTTURL its MQTT URL.
func (n *Node) ClientURL() string {
	return "nats://" + net.JoinHostPort(n.Config.Host, strconv.Itoa(n.Config.Port))
}

// MQTTURL is the node's MQTT URL.
func (n *Node) MQTTURL() string {
	return "tcp://" + net.JoinHostPort(n.Config.Host, strconv.Itoa(n.Config.MQTTPort))
}

// freePorts finds n ports free on host, below the kernel's ephemeral range: the nodes
// bind them after this returns, and a port from the ephemeral range could meanwhile be
// taken by any outgoing connection of the machine (seen under parallel tests: a node
// that never became ready).
func freePorts(host string, n int) ([]int, error) {
	lo, hi := 10000, ephemeralLow()
	if hi-lo < 1000 {
		lo, hi = 1024, 65535 // an unusual range: probe anywhere
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free port found")
		}
		p := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow is the low end of Linux's ephemeral port range (32768 if unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// Configs renders the node configurations into opts.Dir, with free ports, without
// starting anything (for standalone nats-server processes).
func Configs(opts Options) ([]*Node, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Partitions == 0 {
		opts.Partitions = DefaultPartitions
	}
	if opts.Dir == "" || opts.Issuer == "" || opts.CalloutUser == "" || opts.SysUser == "" {
		return nil, errors.New("natscluster: Dir, Issuer, CalloutUser and SysUser are required")
	}
	ports, err := freePorts(opts.Host, 3*opts.Nodes)
	if err != nil {
		return nil, fmt.Errorf("natscluster: %w", err)
	}
	var routes []string
	for i := range opts.Nodes {
		routes = append(routes, net.JoinHostPort(opts.Host, strconv.Itoa(ports[3*i+1])))
	}
	src, dst := natsbus.Mapping(opts.Topics, opts.Partitions)
	nodes := make([]*Node, opts.Nodes)
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		c := NodeConfig{
			Name: name, Host: opts.Host,
			Port: ports[3*i], ClusterPort: ports[3*i+1], MQTTPort: ports[3*i+2],
			StoreDir: filepath.Join(opts.Dir, name, "js"), Routes: routes,
			CalloutUser: opts.CalloutUser, CalloutPassword: opts.CalloutPassword,
			SysUser: opts.SysUser, SysPassword: opts.SysPassword, Issuer: opts.Issuer,
			MappingSource: src, MappingDestination: dst,
		}
		text, err := Render(c)
		if err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		file := filepath.Join(opts.Dir, name+".conf")
		if err := os.MkdirAll(filepath.Dir(c.StoreDir), 0o700); err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		if err := os.WriteFile(file, text, 0o600); err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		nodes[i] = &Node{Config: c, File: file}
	}
	return nodes, nil
}

// Start renders the configurations and starts every node; it returns once every node
// accepts connections and the cluster has a JetStream meta leader, or ctx ends.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	// A port found free can still be taken before a node binds it; such a node never gets
	// ready, and the cluster starts again on other ports.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var c *Cluster
		if c, err = start(ctx, opts); err == nil || ctx.Err() != nil || !errors.Is(err, errNotReady) {
			return c, err
		}
	}
	return nil, err
}

// errNotReady is a node that did not accept connections in time.
var errNotReady = errors.New("node not ready")

func start(ctx context.Context, opts Options) (*Cluster, error) {
	nodes, err := Configs(opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, nodes: nodes}
	for i := range nodes {
		if err := c.startNode(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	for i := range nodes {
		if err := c.ready(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitMetaLeader(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ready waits until node i accepts connections.
func (c *Cluster) ready(ctx context.Context, i int) error {
	n := c.nodes[i]
	if c.opts.Binary == "" {
		if !n.Server().ReadyForConnections(20 * time.Second) {
			return fmt.Errorf("natscluster: %s: %w", n.Config.Name, errNotReady)
		}
		return nil
	}
	addr := net.JoinHostPort(n.Config.Host, strconv.Itoa(n.Config.Port))
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natscluster: node %s not ready: %w", n.Config.Name, ctx.Err())
		case <-n.exited:
			return fmt.Errorf("natscluster: %s exited: %w", n.Config.Name, errNotReady)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) startNode(i int) error {
	n := c.nodes[i]
	if c.opts.Binary != "" {
		return c.startProcess(n)
	}
	so, err := server.ProcessConfigFile(n.File)
	if err != nil {
		return fmt.Errorf("natscluster: %s: %w", n.File, err)
	}
	so.NoSigs = true
	so.NoLog = true
	s, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("natscluster: %s: %w", n.Config.Name, err)
	}
	go s.Start()
	n.mu.Lock()
	n.srv = s
	n.mu.Unlock()
	return nil
}

// Nodes returns the nodes.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// ClientURLs returns every node's NATS URL; MQTTURLs every node's MQTT URL.
func (c *Cluster) ClientURLs() []string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.ClientURL())
	}
	return u
}

// MQTTURLs returns every node's MQTT URL.
func (c *Cluster) MQTTURLs() []string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.MQTTURL())
	}
	return u
}

// WaitMetaLeader waits until a running node is the JetStream meta leader.
func (c *Cluster) WaitMetaLeader(ctx context.Context) error {
	if c.opts.Binary != "" {
		return c.waitMetaLeaderRemote(ctx)
	}
	_, err := c.waitFor(ctx, func(s *server.Server) bool { return s.JetStreamIsLeader() })
	return err
}

// waitMetaLeaderRemote asks the nodes' system API (JSZ, as the system user) until one
// names a meta leader.
func (c *Cluster) waitMetaLeaderRemote(ctx context.Context) error {
	nc, err := nats.Connect(strings.Join(c.ClientURLs(), ","), nats.UserInfo(c.opts.SysUser, c.opts.SysPassword),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	defer nc.Close()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := nc.RequestWithContext(rctx, "$SYS.REQ.SERVER.PING.JSZ", nil)
		cancel()
		if err == nil {
			var resp struct {
				Data struct {
					Meta *struct {
						Leader string `json:"leader"`
					} `json:"meta_cluster"`
				} `json:"data"`
			}
			if json.Unmarshal(msg.Data, &resp) == nil && resp.Data.Meta != nil && resp.Data.Meta.Leader != "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natscluster: no JetStream meta leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MetaLeader returns the index of the node that is the JetStream meta leader.
func (c *Cluster) MetaLeader(ctx context.Context) (int, error) {
	return c.waitFor(ctx, func(s *server.Server) bool { return s.JetStreamIsLeader() })
}

// StreamLeader returns the index of the node leading stream in account.
func (c *Cluster) StreamLeader(ctx context.Context, account, stream string) (int, error) {
	return c.waitFor(ctx, func(s *server.Server) bool { return s.JetStreamIsStreamLeader(account, stream) })
}

func (c *Cluster) waitFor(ctx context.Context, ok func(*server.Server) bool) (int, error) {
	for {
		for i, n := range c.nodes {
			if s := n.Server(); s != nil && s.Running() && ok(s) {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("natscluster: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startProcess runs the node as a nats-server process, its output in <name>.log.
func (c *Cluster) startProcess(n *Node) error {
	logf, err := os.OpenFile(filepath.Join(c.opts.Dir, n.Config.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	cmd := exec.Command(c.opts.Binary, "-c", n.File)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("natscluster: starting %s: %w", n.Config.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.mu.Lock()
	n.proc, n.exited = cmd, exited
	n.mu.Unlock()
	return nil
}

// Stop shuts node i down (its clients' connections drop): Shutdown in process, SIGTERM
// for a process.
func (c *Cluster) Stop(i int) { c.stop(i, syscall.SIGTERM) }

// Kill ends node i's process with SIGKILL: a hard crash, nothing flushed or said goodbye.
// In-process nodes are shut down.
func (c *Cluster) Kill(i int) { c.stop(i, syscall.SIGKILL) }

func (c *Cluster) stop(i int, sig syscall.Signal) {
	n := c.nodes[i]
	n.mu.Lock()
	s, proc, exited := n.srv, n.proc, n.exited
	n.srv, n.proc = nil, nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
	if proc != nil {
		_ = proc.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = proc.Process.Kill()
			<-exited
		}
	}
}

// Restart starts node i again on its configuration and store.
func (c *Cluster) Restart(i int) error {
	if err := c.startNode(i); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.ready(ctx, i)
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.nodes {
		c.Stop(i)
	}
}
