// Package natsbus carries clipgate's backend traffic over a NATS JetStream cluster whose
// MQTT gateway the devices connect to (they keep speaking MQTT 3.1.1):
//
//   - Workers is a token worker's transport (tokenworker.Transport): a NATS queue group on
//     the auth-request subjects, partitioned by the server's deterministic subject
//     mapping (Mappings) so that a device's requests reach the same worker.
//   - Events is the events consumer's source (events.Source): a durable JetStream consumer
//     directly on the MQTT gateway's stream $MQTT_msgs, filtered to the event subjects,
//     shared by any number of processes, acknowledged only after the handler succeeded.
//   - Status is the console's status source (console.StatusSource): a core subscription.
//
// MQTT topics map to NATS subjects as the gateway maps them (server/README-MQTT.md of
// nats-server): "/" separates tokens ("."), and a "." inside a level becomes "//".
//
// Events depends on names internal to the gateway ($MQTT_msgs, $MQTT.msgs.<subject>),
// documented in that README and pinned with the server version in go.mod; the tests of
// this package fail if they change. A separate stream capturing the event subjects would
// lose acknowledged events when its leader dies: the device's PUBACK waits only for
// $MQTT_msgs (issue 13).
package natsbus
