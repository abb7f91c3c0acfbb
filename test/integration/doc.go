// Package integration holds clipgate's end-to-end tests: device kits, raw MQTT clients and
// the official OSS SDK against the real in-process stack (internal/inproc, the stack of
// clipgatetest: local OSS and STS, the broker, token workers), on loopback with random
// ports and temporary directories. The package has no code of its own; run it with
//
//	go test -race ./test/integration/
//
// Set CLIPGATE_TEST_LOG=1 to see every component's logs.
package integration
