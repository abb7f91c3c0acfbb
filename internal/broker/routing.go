package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/clipgate/clipgate/topics"
)

// Values of Config.WorkerRouting.
const (
	// WorkerRoutingRoundRobin sends each auth request to the connected token worker picked
	// least recently: an even spread, but a device's requests alternate between workers.
	WorkerRoutingRoundRobin = "round-robin"
	// WorkerRoutingDevice sends all of a device's auth requests to the same connected token
	// worker (rendezvous hashing of the device ID over the group's connected members), so
	// that the worker's credentials cache, per-device rate limit and replay cache see every
	// request of the device. When a worker leaves or joins, only the devices it had (or
	// takes) move.
	WorkerRoutingDevice = "device"
)

// deviceRouter picks the member of a token-worker share group for an auth request by
// rendezvous (highest random weight) hashing: each connected member gets the weight
// hash(device ID, member client ID) and the heaviest wins. It keeps no state, so it
// takes no lock and does not allocate.
type deviceRouter struct {
	clients *mqtt.Clients
	scheme  topics.Scheme
	// requests is the worker filter without its "$share/{group}/" prefix:
	// "{root}/devices/+/auth/request".
	requests string
}

func newDeviceRouter(clients *mqtt.Clients, scheme topics.Scheme) *deviceRouter {
	const group = "g"
	f := scheme.WorkerFilter(group)
	return &deviceRouter{clients: clients, scheme: scheme, requests: f[len("$share/"+group+"/"):]}
}

// workerGroup reports whether filter (a key of mqtt.Subscribers.Shared, which keeps the
// "$share/{group}/" prefix) is a share group of the auth-request filter, whatever the
// group's name.
func (r *deviceRouter) workerGroup(filter string) bool {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return false
	}
	slash := strings.IndexByte(rest, '/')
	return slash > 0 && rest[slash+1:] == r.requests
}

// device returns the device ID of an auth-request topic, or "" for any other topic.
func (r *deviceRouter) device(topic string) string {
	if kind, id, ok := r.scheme.Parse(topic); ok && kind == topics.KindAuthRequest {
		return id
	}
	return ""
}

// pick returns the connected member with the highest weight for device, or "" when no
// member is connected (the caller then falls back to round-robin, which queues the
// message on an offline member).
func (r *deviceRouter) pick(device string, members map[string]packets.Subscription) string {
	dh := fnv1a(fnvOffset, device)
	best, bestW := "", uint64(0)
	for id := range members {
		if cl, ok := r.clients.Get(id); !ok || cl.Closed() {
			continue
		}
		w := rendezvousWeight(dh, id)
		if best == "" || w > bestW || w == bestW && id < best {
			best, bestW = id, w
		}
	}
	return best
}

// rendezvousWeight is the weight of member for the device whose FNV-1a state is dh: FNV-1a
// continued over a separator and the member ID, then a 64-bit finaliser so that the
// weights of one device over similar member IDs ("tokenworker:1", "tokenworker:2") are
// unrelated. The hash is fixed (no random seed), so assignments survive broker restarts.
func rendezvousWeight(dh uint64, member string) uint64 {
	h := (dh ^ 0xff) * fnvPrime // separator: a byte no device ID contains
	return mix64(fnv1a(h, member))
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is the finaliser of SplitMix64: a bijection whose output bits each depend on
// every input bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
