package natsbus

import (
	"strconv"
	"strings"

	"github.com/clipgate/clipgate/topics"
)

// MQTTStream is the MQTT gateway's stream of QoS 1 messages, and MQTTStreamPrefix the
// prefix of its subjects (nats-server's README-MQTT.md).
const (
	MQTTStream       = "$MQTT_msgs"
	MQTTStreamPrefix = "$MQTT.msgs."
)

// PartitionPrefix starts the subjects the server maps auth requests to:
// "tokenworkers.<partition>.<request subject>" (see Mappings).
const PartitionPrefix = "tokenworkers."

// Subject returns the NATS subject of an MQTT topic or filter, as the gateway maps it:
// "/" becomes ".", "." becomes "//", "+" becomes "*" and "#" becomes ">".
func Subject(topic string) string {
	var b strings.Builder
	b.Grow(len(topic) + 8)
	levels := strings.Split(topic, "/")
	for i, l := range levels {
		if i > 0 {
			b.WriteByte('.')
		}
		switch l {
		case "+":
			b.WriteByte('*')
		case "#":
			b.WriteByte('>')
		default:
			b.WriteString(strings.ReplaceAll(l, ".", "//"))
		}
	}
	return b.String()
}

// Topic returns the MQTT topic of a NATS subject of the gateway: the inverse of Subject
// for topics without wildcards.
func Topic(subject string) string {
	var b strings.Builder
	b.Grow(len(subject))
	for i := 0; i < len(subject); i++ {
		switch {
		case subject[i] == '/' && i+1 < len(subject) && subject[i+1] == '/':
			b.WriteByte('.')
			i++
		case subject[i] == '.':
			b.WriteByte('/')
		default:
			b.WriteByte(subject[i])
		}
	}
	return b.String()
}

// requestTopic returns the MQTT topic of an auth request received on subject, with or
// without the partition prefix the server's mapping adds.
func requestTopic(subject string) string {
	if rest, ok := strings.CutPrefix(subject, PartitionPrefix); ok {
		if dot := strings.IndexByte(rest, '.'); dot >= 0 {
			subject = rest[dot+1:]
		}
	}
	return Topic(subject)
}

// requestSubject is every device's auth-request subject: <root>.devices.*.auth.request.
func requestSubject(s topics.Scheme) string { return Subject(s.AuthRequest("+")) }

// EventSubject is every device's event subject: <root>.devices.*.events.*.
func EventSubject(s topics.Scheme) string { return Subject(s.Root() + "/devices/+/events/+") }

// Mapping returns the subject mapping (source and destination, for the APP account's
// "mappings" in the server configuration) that spreads auth requests over partitions
// partitions by a hash of the device ID: the server's deterministic partition function.
// A token worker subscribes to the partitions it owns, so every request of a device
// reaches the same worker (its credentials cache and rate limit are per device).
func Mapping(s topics.Scheme, partitions int) (src, dst string) {
	root := Subject(s.Root())
	return requestSubject(s), PartitionPrefix + "{{partition(" + itoa(partitions) + ",1)}}." + root + ".devices.{{wildcard(1)}}.auth.request"
}

// PartitionSubject is the subject auth requests of partition p arrive on.
func PartitionSubject(s topics.Scheme, p int) string {
	return PartitionPrefix + itoa(p) + "." + requestSubject(s)
}

func itoa(n int) string { return strconv.Itoa(n) }
