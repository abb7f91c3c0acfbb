// Package inproc runs a whole clipgate in one process: the local cloud (OSS and STS), the
// MQTT broker and N token workers, on loopback, with keys generated at start and every
// file under one directory. It is the stack behind the public package clipgatetest,
// which wraps it for users' tests, and behind devstack, tokenbench and this module's own
// tests, which also use what clipgatetest keeps internal: the hooks on the broker's and
// the workers' configurations (Options.BrokerConfig, Options.WorkerConfig) and their
// counters (Stack.BrokerStats, Stack.WorkerStats).
//
// Its errors and logs say "clipgatetest", the name its public users know it by.
package inproc
