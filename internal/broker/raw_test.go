package broker

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// Raw MQTT 3.1.1 packets, for what paho will not send.

type connectPacket struct {
	clientID, username, password string
	willTopic, willPayload       string
	clean                        bool
	keepalive                    uint16
	protocolName                 string // "MQTT" when empty
	protocolLevel                byte   // 4 when zero
}

func mqttString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// remainingLength encodes an MQTT variable-length integer.
func remainingLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func (c connectPacket) encode() []byte {
	name := c.protocolName
	if name == "" {
		name = "MQTT"
	}
	level := c.protocolLevel
	if level == 0 {
		level = 4
	}
	var flags byte
	if c.clean {
		flags |= 0x02
	}
	if c.willTopic != "" {
		flags |= 0x04 | 0x08 // will, QoS 1
	}
	if c.username != "" {
		flags |= 0x80
	}
	if c.password != "" {
		flags |= 0x40
	}
	body := mqttString(nil, name)
	body = append(body, level, flags)
	body = binary.BigEndian.AppendUint16(body, c.keepalive)
	body = mqttString(body, c.clientID)
	if c.willTopic != "" {
		body = mqttString(body, c.willTopic)
		body = mqttString(body, c.willPayload)
	}
	if c.username != "" {
		body = mqttString(body, c.username)
	}
	if c.password != "" {
		body = mqttString(body, c.password)
	}
	return append(remainingLength([]byte{0x10}, len(body)), body...)
}

func (e *testEnv) dial(t testing.TB) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.b.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	return conn
}

func (e *testEnv) rawConnect(t testing.TB, c connectPacket) net.Conn {
	t.Helper()
	conn := e.dial(t)
	if _, err := conn.Write(c.encode()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readConnack reads a CONNACK and returns its return code.
func readConnack(t testing.TB, conn net.Conn) byte {
	t.Helper()
	var b [4]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		t.Fatalf("reading CONNACK: %v", err)
	}
	if b[0] != 0x20 || b[1] != 2 {
		t.Fatalf("not a CONNACK: % x", b)
	}
	return b[3]
}

// expectClosed reads until the broker closes the connection, and fails if it sends a
// CONNACK accepting the client first.
func expectClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	r := bufio.NewReader(conn)
	var got []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection not closed (read % x)", got)
			}
			break
		}
		got = append(got, b)
	}
	if len(got) >= 4 && got[0] == 0x20 && got[3] == 0 {
		t.Fatalf("broker accepted the connection: % x", got)
	}
}

// ping sends PINGREQ and reads the PINGRESP.
func ping(t testing.TB, conn net.Conn) {
	t.Helper()
	if _, err := conn.Write([]byte{0xc0, 0x00}); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil || b != [2]byte{0xd0, 0x00} {
		t.Fatalf("PINGRESP: % x %v", b, err)
	}
}
