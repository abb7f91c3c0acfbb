package broker

// Login is what a client presents to another engine whose authentication is delegated
// to clipgate (the NATS auth callout, internal/natsauth).
type Login struct {
	// ClientID is the MQTT client ID, or the NATS connection name of a native client.
	ClientID string
	// AssignedID reports that the client sent no client ID (the engine assigns one).
	AssignedID bool
	Username   string
	Password   string
}

// Decide is the broker's own authentication decision (the code its MQTT listener runs,
// revocation included) for a client of another engine: the principal, or a *Refusal
// saying why the client is refused. It is safe for concurrent use and needs no Start.
func (b *Broker) Decide(l Login) (Principal, error) {
	in := login{clientID: l.ClientID, username: l.Username, password: l.Password, assignedID: l.AssignedID}
	p, r, why := b.decideLogin(&in)
	if r != refuseNone {
		return Principal{}, &Refusal{Reason: r.label(), msg: r.String() + ": " + why}
	}
	return p, nil
}

// Refusal is the error of a refused Decide.
type Refusal struct {
	// Reason is the refusal's label in the broker's connect_refusals_total metric:
	// bad_login, not_authorized, client_id_rejected (or busy).
	Reason string
	msg    string
}

func (r *Refusal) Error() string { return r.msg }

// Revoked reports whether deviceID is on the broker's revocation list.
func (b *Broker) Revoked(deviceID string) bool { return b.revs.Revoked(deviceID) }
