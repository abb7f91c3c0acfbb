package natsauth

import (
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/topics"
)

// Permissions returns the NATS subjects a principal may publish and subscribe to: the
// matrix of topics.Scheme.Allowed written as subject lists (TestPermissionsMatchScheme
// and the ACL tests against a cluster hold them to it). group is the token workers'
// queue group, which the workers' subscribe permission names, so that they can read
// requests only as members of it.
func Permissions(s topics.Scheme, p broker.Principal, group string) (pub, sub []string) {
	root := natsbus.Subject(s.Root())
	switch p.Role {
	case topics.RoleDevice:
		req := natsbus.Subject(s.AuthRequest(p.DeviceID))
		pub = []string{
			req,
			// The cluster's mapping moves requests to a partition before the MQTT
			// gateway checks the permission (nats-server mqttParsePub).
			natsbus.PartitionPrefix + "*." + req,
			natsbus.Subject(s.Status(p.DeviceID)),
		}
		for _, name := range topics.EventNames() {
			pub = append(pub, natsbus.Subject(s.Root()+"/devices/"+p.DeviceID+"/events/"+name))
		}
		sub = []string{natsbus.Subject(s.AuthReply(p.DeviceID))}
	case topics.RoleTokenWorker:
		req := natsbus.Subject(s.AuthRequest("+"))
		pub = []string{natsbus.Subject(s.AuthReply("+"))}
		sub = []string{req + " " + group, natsbus.PartitionPrefix + "*." + req + " " + group}
	case topics.RoleConsumer, topics.RoleConsole:
		stream := natsbus.MQTTStream
		filter := natsbus.MQTTStreamPrefix + natsbus.EventSubject(s)
		pub = []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + stream,
			// The filter is part of the subject (nats.go and the server check that it is
			// the consumer's), so only event consumers can be made.
			"$JS.API.CONSUMER.CREATE." + stream + ".*." + filter,
			"$JS.API.CONSUMER.INFO." + stream + ".*",
			"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
			"$JS.ACK." + stream + ".>",
		}
		sub = []string{
			"_INBOX." + p.Username + ".>",
			natsbus.Subject(s.StatusFilter("")),
			natsbus.Subject(s.EventFilter("")),
		}
		if p.Role == topics.RoleConsole {
			// The console alone publishes the signed revocation list.
			pub = append(pub, natsbus.Subject(s.Revocations()))
			sub = append(sub, natsbus.Subject(s.Revocations()))
		}
	case topics.RoleAdmin:
		pub = []string{root + ".>"}
		sub = []string{root + ".>", natsbus.PartitionPrefix + ">"}
	}
	return pub, sub
}
