package broker

import (
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/topics"
)

// Principal is who an authenticated MQTT client is.
type Principal struct {
	Role     topics.Role
	DeviceID string // for topics.RoleDevice, else ""
	Username string
}

// refusal is why a connection is refused, and the CONNACK code that says so.
type refusal int

const (
	refuseNone       refusal = iota
	refuseBadLogin           // bad or malformed username or password
	refuseNotAllowed         // revoked, certificate mismatch, will topic not allowed
	refuseIdentifier         // client ID not acceptable for this principal
	refuseBusy               // throttled or over a limit: try again later (see limits.go)
)

func (r refusal) String() string {
	switch r {
	case refuseBadLogin:
		return "bad username or password"
	case refuseNotAllowed:
		return "not authorized"
	case refuseIdentifier:
		return "client identifier rejected"
	case refuseBusy:
		return "server busy, try later"
	}
	return "accepted"
}

// connackCode is the CONNACK return code of a refusal for the client's protocol version.
// mochi's own v5->v3 mapping turns "bad username or password" into v3's "not
// authorized", so v3 codes are given directly (below 0x80, SendConnack passes them on).
func (r refusal) connackCode(version byte) packets.Code {
	if version < 5 {
		switch r {
		case refuseBadLogin:
			return packets.ErrMalformedUsernameOrPassword // 0x04 bad user name or password
		case refuseIdentifier:
			return packets.Err3ClientIdentifierNotValid // 0x02
		case refuseBusy:
			return packets.Err3ServerUnavailable // 0x03, which clients retry
		default:
			return packets.Err3NotAuthorized // 0x05
		}
	}
	switch r {
	case refuseBadLogin:
		return packets.ErrBadUsernameOrPassword
	case refuseIdentifier:
		return packets.ErrClientIdentifierNotValid
	case refuseBusy:
		return packets.ErrConnectionRateExceeded
	default:
		return packets.ErrNotAuthorized
	}
}

// errRefused is returned from OnConnect after the CONNACK is sent; mochi then closes.
var errRefused = errors.New("connection refused")

// session is the broker's state for one connected client, created when it authenticates
// and dropped when it disconnects. It is keyed by *mqtt.Client, never by client ID, so
// that a connection being taken over cannot remove its successor's state.
type session struct {
	Principal
	limiter    *rate.Limiter // nil: unlimited
	superseded atomic.Bool   // a new connection with the same client ID is taking over
	acl        aclCache
	// queued counts the auth requests routed to this client (a token worker) that mochi
	// has not yet written or dropped (flow.go).
	queued atomic.Int32
}

// sessions maps *mqtt.Client to *session.
type sessions struct {
	m sync.Map
	n atomic.Int64
}

func (s *sessions) get(cl *mqtt.Client) *session {
	v, ok := s.m.Load(cl)
	if !ok {
		return nil
	}
	return v.(*session)
}

func (s *sessions) add(cl *mqtt.Client, ss *session) {
	if _, loaded := s.m.Swap(cl, ss); !loaded {
		s.n.Add(1)
	}
}

func (s *sessions) remove(cl *mqtt.Client) {
	if _, loaded := s.m.LoadAndDelete(cl); loaded {
		s.n.Add(-1)
	}
}

func (s *sessions) rangeAll(f func(cl *mqtt.Client, ss *session) bool) {
	s.m.Range(func(k, v any) bool { return f(k.(*mqtt.Client), v.(*session)) })
}

// devicePasswordPrefix marks device passwords (identity.MQTTPassword); a password of
// that shape is always checked as a device's, never against the service accounts.
const devicePasswordPrefix = "v1."

// login is what a client presents when it connects.
type login struct {
	clientID, username, password string
	assignedID                   bool   // the broker chose the client ID (the client sent none)
	source                       string // source address, for the bcrypt gate (limits.go)
	certCN                       string // subject CN of a verified client certificate
	hasCert                      bool
	hasWill, willRetain          bool
	willTopic                    string
}

// authenticate decides who the connecting client is.
func (b *Broker) authenticate(cl *mqtt.Client, pk packets.Packet) (Principal, refusal, string) {
	in := login{
		clientID:   cl.ID,
		username:   string(pk.Connect.Username),
		password:   string(pk.Connect.Password),
		assignedID: cl.Properties.Props.AssignedClientID != "",
		hasWill:    pk.Connect.WillFlag,
		willRetain: pk.Connect.WillRetain,
		willTopic:  pk.Connect.WillTopic,
		source:     sourceOf(cl.Net.Remote),
	}
	in.certCN, in.hasCert = peerCommonName(cl)
	p, r, why := b.decideLogin(&in)
	if r != refuseNone {
		return p, r, why
	}
	if existing, ok := b.srv.Clients.Get(in.clientID); ok && string(existing.Properties.Username) != in.username {
		return Principal{}, refuseIdentifier, "client ID is in use by another account"
	}
	return p, refuseNone, ""
}

// decideLogin is the authentication decision, shared by the MQTT listener and the EMQX
// authn endpoint. It returns the principal, or the refusal and a reason for the log.
func (b *Broker) decideLogin(in *login) (Principal, refusal, string) {
	if in.hasCert && in.certCN != in.clientID {
		return Principal{}, refuseNotAllowed, "client certificate CN does not match the client ID"
	}
	var p Principal
	switch {
	case deviceid.Valid(in.username) && (in.hasCert && in.password == "" || strings.HasPrefix(in.password, devicePasswordPrefix)):
		if in.clientID != in.username {
			return Principal{}, refuseIdentifier, "device client ID must equal its username (the device ID)"
		}
		if !in.hasCert || in.password != "" {
			if err := identity.VerifyDevicePassword(b.connect, in.username, in.password, b.now(), b.cfg.PasswordWindow); err != nil {
				return Principal{}, refuseBadLogin, err.Error()
			}
			if r, why := b.passwordOnce(in.username, in.password); r != refuseNone {
				return Principal{}, r, why
			}
		}
		if b.revs.Revoked(in.username) {
			return Principal{}, refuseNotAllowed, "device is revoked"
		}
		p = Principal{Role: topics.RoleDevice, DeviceID: in.username, Username: in.username}
	case in.username == "" || in.password == "":
		return Principal{}, refuseBadLogin, "missing username or password"
	default:
		if !b.acquireBcrypt(in.source) {
			return Principal{}, refuseBusy, "too many password checks in progress"
		}
		role, ok := b.accounts.Authenticate(in.username, in.password)
		b.lim.bcrypt.release(in.source)
		if !ok {
			return Principal{}, refuseBadLogin, "unknown service account or wrong password"
		}
		if role == topics.RoleDevice { // LoadServiceAccounts refuses it
			return Principal{}, refuseNotAllowed, "service account has no usable role"
		}
		if !in.assignedID && deviceid.Valid(in.clientID) {
			return Principal{}, refuseIdentifier, "a service client ID must not have the form of a device ID (use USERNAME:INSTANCE)"
		}
		p = Principal{Role: role, Username: in.username}
	}
	if in.hasWill && !b.scheme.Allowed(p.Role, p.DeviceID, in.willTopic, topics.Publish) {
		return Principal{}, refuseNotAllowed, "will topic not allowed"
	}
	if in.hasWill && in.willRetain && !b.scheme.MayRetain(p.Role, p.DeviceID, in.willTopic) {
		return Principal{}, refuseNotAllowed, "retained will not allowed on this topic"
	}
	return p, refuseNone, ""
}

// peerCommonName returns the subject CN of the client's verified TLS certificate.
// The handshake is complete: mochi read the CONNECT packet through it.
func peerCommonName(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return "", false
	}
	return st.PeerCertificates[0].Subject.CommonName, true
}

// ServiceClientID returns the recommended client ID of a service account instance,
// USERNAME:INSTANCE. Service client IDs must not have the form of a device ID (the ':'
// sees to that), so that no service can take over a device's session or be taken over by
// one; an empty client ID (assigned by the broker, clean sessions only) is accepted too.
func ServiceClientID(username, instance string) string {
	return username + ":" + instance
}

func (b *Broker) newSession(p Principal) *session {
	s := &session{Principal: p}
	r, burst := b.cfg.ServiceRate, b.cfg.ServiceBurst
	if p.Role == topics.RoleDevice {
		r, burst = b.cfg.DeviceRate, b.cfg.DeviceBurst
	}
	if r > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(r), burst)
	}
	return s
}
