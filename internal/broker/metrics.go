package broker

import (
	"context"
	"errors"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/topics"
)

// roles are the roles of the by-role metrics, in label order.
var roles = [...]topics.Role{topics.RoleDevice, topics.RoleTokenWorker, topics.RoleConsumer, topics.RoleAdmin}

func roleIndex(r topics.Role) int { return int(r) - 1 } // roles[i] == Role(i+1)

// refusalLabels are the reason labels of refused connections, by refusal.
var refusalLabels = [...]string{
	refuseBadLogin:   "bad_login",
	refuseNotAllowed: "not_authorized",
	refuseIdentifier: "client_id_rejected",
}

// label is the refusal's reason label.
func (r refusal) label() string {
	if r > refuseNone && int(r) < len(refusalLabels) {
		return refusalLabels[r]
	}
	return "busy"
}

// connMetrics counts connection outcomes for Prometheus (the rest of the metrics are read
// from Stats at scrape time).
type connMetrics struct {
	connects [len(roles)]atomic.Int64
	refusals [len(refusalLabels)]atomic.Int64
}

func (m *connMetrics) accepted(r topics.Role) {
	if i := roleIndex(r); i >= 0 && i < len(roles) {
		m.connects[i].Add(1)
	}
}

func (m *connMetrics) refused(r refusal) {
	if r > refuseNone && int(r) < len(refusalLabels) {
		m.refusals[r].Add(1)
	}
}

// Collector returns the broker's Prometheus metrics, read at scrape time. (Counters added
// to Stats should get a metric here too.)
func (b *Broker) Collector() prometheus.Collector {
	const sub = "broker"
	var (
		conns     = ops.Desc(sub, "connections", "Authenticated live MQTT connections, by role.", "role")
		connects  = ops.Desc(sub, "connects_total", "Accepted MQTT connections, by role.", "role")
		refusals  = ops.Desc(sub, "connect_refusals_total", "Refused MQTT connections (and EMQX authentications), by reason.", "reason")
		msgsIn    = ops.Desc(sub, "messages_received_total", "PUBLISH packets received from clients.")
		msgsOut   = ops.Desc(sub, "messages_sent_total", "PUBLISH packets sent to clients.")
		dropped   = ops.Desc(sub, "messages_dropped_total", "Messages dropped for a subscriber, by cause: queue_full (outbound queue, --max-writes-pending) or inflight (inflight window or packet IDs exhausted).", "cause")
		inflight  = ops.Desc(sub, "queued_messages", "QoS 1/2 messages awaiting delivery or acknowledgement, by role and state (connected, or offline: held for a persistent session).", "role", "state")
		retained  = ops.Desc(sub, "retained_messages", "Retained messages.")
		subs      = ops.Desc(sub, "subscriptions", "Subscriptions.")
		bytesIn   = ops.Desc(sub, "received_bytes_total", "Bytes received from clients.")
		bytesOut  = ops.Desc(sub, "sent_bytes_total", "Bytes sent to clients.")
		takeovers = ops.Desc(sub, "session_takeovers_total", "Live connections replaced by a new one with the same client ID.")
		carried   = ops.Desc(sub, "takeover_carried_messages_total", "Messages carried from a taken-over session to the new connection.")
		acl       = ops.Desc(sub, "acl_denied_total", "Publishes, subscriptions and deliveries the topic ACL denied.")
		limited   = ops.Desc(sub, "rate_limited_disconnects_total", "Clients disconnected for exceeding their publish rate.")
		paced     = ops.Desc(sub, "paced_publishes_total", "QoS 1/2 publishes held back to the client's rate.")
		revoked   = ops.Desc(sub, "revoked_disconnects_total", "Connected devices disconnected because they were revoked.")
		abuse     = ops.Desc(sub, "abuse_refusals_total", "Connections, sockets, subscriptions and publishes refused by the abuse limits, by limit.", "limit")
		delayed   = ops.Desc(sub, "logins_delayed_total", "Failed service-account logins whose answer was held back.")
		synced    = ops.Desc(sub, "synced_password_logins_total", "Device logins with a password in the narrow window of a device that knows the server time.")
		pwCache   = ops.Desc(sub, "password_cache_entries", "Device passwords remembered against replay.")
		pending   = ops.Desc(sub, "pending_connections", "Sockets that have not been answered a CONNACK yet.")
		untracked = ops.Desc(sub, "limit_tables_full_total", "Keys (client IDs, usernames, addresses) not limited because their table was full.")
		held      = ops.Desc(sub, "held_auth_requests", "Auth requests held until a token worker's outbound queue has room.")
		holdEnds  = ops.Desc(sub, "auth_request_hold_timeouts_total", "Held auth requests sent on to a full token-worker queue after the longest hold (5 s).")
	)
	descs := []*prometheus.Desc{conns, connects, refusals, msgsIn, msgsOut, dropped, inflight, retained, subs,
		bytesIn, bytesOut, takeovers, carried, acl, limited, paced, revoked, abuse, delayed, synced, pwCache, pending, untracked,
		held, holdEnds}
	return ops.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		s := b.Stats()
		var live [len(roles)]int
		b.sessions.rangeAll(func(cl *mqtt.Client, ss *session) bool {
			if i := roleIndex(ss.Role); i >= 0 && i < len(roles) && !cl.Closed() {
				live[i]++
			}
			return true
		})
		for i, r := range roles {
			ops.Gauge(ch, conns, live[i], r.String())
			ops.Counter(ch, connects, b.met.connects[i].Load(), r.String())
		}
		for r := refuseBadLogin; int(r) < len(refusalLabels); r++ {
			ops.Counter(ch, refusals, b.met.refusals[r].Load(), refusalLabels[r])
		}
		q := b.queued()
		for i, r := range roles {
			ops.Gauge(ch, inflight, q[i][0], r.String(), "connected")
			ops.Gauge(ch, inflight, q[i][1], r.String(), "offline")
		}
		ops.Counter(ch, msgsIn, s.MessagesReceived)
		ops.Counter(ch, msgsOut, s.MessagesSent)
		ops.Counter(ch, dropped, s.MessagesDropped, "queue_full")
		ops.Counter(ch, dropped, s.InflightDropped, "inflight")
		ops.Gauge(ch, retained, s.Retained)
		ops.Gauge(ch, subs, s.Subscriptions)
		ops.Counter(ch, bytesIn, s.BytesReceived)
		ops.Counter(ch, bytesOut, s.BytesSent)
		ops.Counter(ch, takeovers, s.Takeovers)
		ops.Counter(ch, carried, s.TakeoverCarried)
		ops.Gauge(ch, held, s.FlowHeld)
		ops.Counter(ch, holdEnds, s.FlowTimeouts)
		ops.Counter(ch, acl, s.ACLDenied)
		ops.Counter(ch, limited, s.RateLimited)
		ops.Counter(ch, paced, s.Paced)
		ops.Counter(ch, revoked, s.RevokedDisconnects)
		for _, l := range []struct {
			n     int64
			label string
		}{
			{s.PasswordReplays, "password_replay"}, {s.PasswordCacheFull, "password_cache_full"},
			{s.LoginsBlocked, "login_blocked"}, {s.BcryptBusy, "bcrypt_busy"},
			{s.ClientRateLimited, "client_connect_rate"}, {s.SourceRateLimited, "source_connect_rate"},
			{s.PendingRefused, "pending_sockets"}, {s.SubscriptionsRefused, "subscriptions"},
			{s.RetainRefused, "retain"},
		} {
			ops.Counter(ch, abuse, l.n, l.label)
		}
		ops.Counter(ch, delayed, s.LoginsDelayed)
		ops.Counter(ch, synced, s.SyncedPasswords)
		ops.Gauge(ch, pwCache, s.PasswordCacheEntries)
		ops.Gauge(ch, pending, s.PendingConnections)
		ops.Counter(ch, untracked, s.Untracked)
	})
}

// queued returns the QoS 1/2 messages held for clients, by role and by connected (0) or
// offline (1). An offline session's role is not recorded: one of device form counts as a
// device's, any other as a consumer's (the services that keep persistent sessions).
func (b *Broker) queued() (q [len(roles)][2]int) {
	for _, cl := range b.srv.Clients.GetAll() {
		n := cl.State.Inflight.Len()
		if n == 0 {
			continue
		}
		state, role := 0, topics.Role(0)
		if s := b.sessions.get(cl); s != nil && !cl.Closed() {
			role = s.Role
		} else {
			state = 1
			if deviceid.Valid(cl.ID) && string(cl.Properties.Username) == cl.ID {
				role = topics.RoleDevice
			} else {
				role = topics.RoleConsumer
			}
		}
		if i := roleIndex(role); i >= 0 && i < len(roles) {
			q[i][state] += n
		}
	}
	return q
}

// ReadyCheck is the broker's readiness: it is started, not closed, and its MQTT listener
// accepts connections.
func (b *Broker) ReadyCheck() ops.Check {
	return ops.Check{Name: "mqtt", Run: func(ctx context.Context) error {
		b.mu.Lock()
		started, closed := b.started, b.closed
		b.mu.Unlock()
		if !started || closed {
			return errors.New("broker not running")
		}
		return nil
	}}
}
