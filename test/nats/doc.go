// Package nats holds clipgate's end-to-end tests on a NATS JetStream cluster (3 nodes,
// replicas 3, in this process or as standalone nats-server processes): the full path
// from a device's upload to the console's index, and failover while devices upload.
package nats
