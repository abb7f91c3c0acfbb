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
		// The retained signed revocation list and quota snapshot are read from the
		// gateway's stream (natsbus.Follow); the subject is in the request's body, so the
		// worker can read any retained message of the account (devices' status, the
		// console's documents).
		pub = []string{natsbus.Subject(s.AuthReply("+")), natsbus.RetainedGetSubject}
		sub = []string{req + " " + group, natsbus.PartitionPrefix + "*." + req + " " + group,
			"_INBOX." + p.Username + ".>", natsbus.Subject(s.Revocations()), natsbus.Subject(s.Quotas())}
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
			// The console alone publishes the signed revocation list and quota snapshot.
			pub = append(pub, natsbus.Subject(s.Revocations()), natsbus.Subject(s.Quotas()))
			sub = append(sub, natsbus.Subject(s.Revocations()))
		}
	case topics.RoleAdmin:
		pub = []string{root + ".>"}
		sub = []string{root + ".>", natsbus.PartitionPrefix + ">"}
	}
	return pub, sub
}

// readerPermissions are the callout's own revocation-list reader's (ReaderUsername).
func readerPermissions(s topics.Scheme) (pub, sub []string) {
	return []string{natsbus.RetainedGetSubject}, []string{"_INBOX." + ReaderUsername + ".>", natsbus.Subject(s.Revocations())}
}
