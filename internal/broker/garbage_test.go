package broker

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

// Garbage on the wire is refused without harm: the connection is closed (or refused with
// a CONNACK code) and the broker keeps serving.
func TestGarbageConnections(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.MaxPacketSize = 4096
	})
	noise := make([]byte, 512)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	pw := e.devicePassword("cam-1")
	cases := map[string][]byte{
		"random bytes":           noise,
		"PINGREQ before CONNECT": {0xc0, 0x00},
		"PUBLISH before CONNECT": append([]byte{0x30, 0x07, 0x00, 0x03}, "a/bxy"...),
		"truncated CONNECT":      connectPacket{clientID: "cam-1", username: "cam-1", password: pw}.encode()[:12],
		"oversized CONNECT":      connectPacket{clientID: "cam-1", username: "cam-1", password: strings.Repeat("x", 5000)}.encode(),
		"huge length prefix":     {0x10, 0xff, 0xff, 0xff, 0x7f},
		"bad length encoding":    {0x10, 0xff, 0xff, 0xff, 0xff, 0x01},
		"wrong protocol name":    connectPacket{clientID: "cam-1", username: "cam-1", password: pw, protocolName: "MQTX"}.encode(),
		"protocol level 9":       connectPacket{clientID: "cam-1", username: "cam-1", password: pw, protocolLevel: 9}.encode(),
		"non-UTF-8 username":     connectPacket{clientID: "cam-1", username: "cam-\xff\xfe", password: pw}.encode(),
		"NUL in client ID":       connectPacket{clientID: "cam\x00-1", username: "cam\x00-1", password: pw}.encode(),
		"nothing at all":         nil,
	}
	t.Run("cases", func(t *testing.T) {
		for name, data := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				conn := e.dial(t)
				if len(data) > 0 {
					if _, err := conn.Write(data); err != nil {
						t.Fatal(err)
					}
				}
				expectClosed(t, conn)
			})
		}
	})
	// Still serving.
	d := e.device("cam-1")
	d.publish(t, e.scheme.Status("cam-1"), 1, "alive")
	if n := e.b.Stats().Sessions; n != 1 {
		t.Fatalf("%d sessions left over, want 1", n)
	}
}

// A packet larger than MaxPacketSize from an authenticated client ends its connection.
func TestOversizedPublish(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPacketSize = 8192 })
	d := e.device("cam-1")
	d.publish(t, e.scheme.Status("cam-1"), 1, strings.Repeat("a", 8000)) // fits
	d.Publish(e.scheme.Status("cam-1"), 1, false, bytes.Repeat([]byte("a"), 8193))
	d.waitLost(t)
}

// The default packet limit admits a protocol.MaxMessageSize (64 KiB) payload with its
// topic, and nothing much larger.
func TestDefaultPacketSize(t *testing.T) {
	e := newEnv(t, nil)
	sink := e.service("consumer", "sink")
	sink.subscribe(t, e.scheme.EventFilter(""), 1)
	d := e.device("cam-1")
	d.publish(t, e.scheme.UploadEvent("cam-1"), 1, strings.Repeat("e", 64<<10))
	sink.waitCount(t, 1)
	d.Publish(e.scheme.UploadEvent("cam-1"), 1, false, strings.Repeat("e", 66<<10))
	d.waitLost(t)
}

// A connection that never sends CONNECT is closed after HandshakeTimeout (mochi alone would
// hold it forever), and Close does not wait for connections stuck before CONNECT.
func TestSilentConnection(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	conn := e.dial(t)
	expectClosed(t, conn)

	e2 := newEnv(t, func(c *Config) { c.HandshakeTimeout = time.Hour })
	stuck := e2.dial(t)
	if _, err := stuck.Write([]byte{0x10}); err != nil { // half a fixed header
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		e2.b.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a connection stuck before CONNECT")
	}
	expectClosed(t, stuck)
}
