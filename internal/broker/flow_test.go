package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/testutil"
	"golang.org/x/sys/unix"
)

// rawPacket reads one MQTT packet: its first byte and its body.
func rawPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; shift > 21 {
			return 0, nil, errors.New("bad remaining length")
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return h, body, err
}

// smallBufferDialer dials with the smallest receive buffer the kernel allows, so that a
// client that stops reading fills the broker's outbound queue after a few messages rather
// than after megabytes of socket buffers.
var smallBufferDialer = net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024) })
	return errors.Join(err, serr)
}}

// A burst of auth requests far beyond a token worker's outbound queue, while the worker
// reads nothing, loses none of them: the broker holds the devices' requests until the
// worker's queue has room again (before: mochi acknowledged them to the devices and then
// dropped those beyond MaxWritesPending, and each of those devices waited its whole
// request timeout). The worker stalls until the broker has dropped or is holding
// requests (explicit synchronisation, no sleeps), then reads everything.
func TestAuthRequestBurstToStalledWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	// More devices than the worker's queue holds: once the worker's socket is full, mochi
	// blocks the publishers that passed the picker on the worker's lock (NextPacketID), and
	// the others must be held by the broker, or dropped. 1600 requests of 8 KiB (12.5 MiB)
	// against a queue of 16: the socket buffers (at most 4 MiB here, tcp_wmem) let at most
	// 32 devices finish before the worker's socket is full, so more devices than the queue
	// holds are still publishing then.
	const (
		devices   = 100
		perDevice = 16
		size      = 8 << 10
	)
	e := newEnv(t, func(c *Config) { c.MaxWritesPending = 16; c.DataDir = "" })

	// The worker: raw MQTT, so that the test decides when it reads.
	conn, err := smallBufferDialer.Dial("tcp", e.b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(connectPacket{clientID: ServiceClientID("worker", unique("w")), username: "worker",
		password: passwordOf("worker"), clean: true, keepalive: 600}.encode()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if code := readConnack(t, conn); code != 0 {
		t.Fatalf("worker CONNACK %d", code)
	}
	sub := binary.BigEndian.AppendUint16(nil, 1)
	sub = mqttString(sub, e.scheme.WorkerFilter("g"))
	sub = append(sub, 1)
	if _, err := conn.Write(append(remainingLength([]byte{0x82}, len(sub)), sub...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 1024)
	if h, body, err := rawPacket(r); err != nil || h != 0x90 || len(body) != 3 || body[2] != 1 {
		t.Fatalf("SUBACK: % x % x %v", h, body, err)
	}

	// The devices publish their bursts; a reader per device counts the PUBACKs.
	var acked atomic.Int64
	var wg sync.WaitGroup
	payload := make([]byte, size)
	for i := range devices {
		id := fmt.Sprintf("cam-burst-%02d", i)
		dc := e.rawConnect(t, connectPacket{clientID: id, username: id, password: e.devicePassword(id), clean: true, keepalive: 600})
		_ = dc.SetDeadline(time.Now().Add(time.Minute))
		if code := readConnack(t, dc); code != 0 {
			t.Fatalf("%s CONNACK %d", id, code)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			dr := bufio.NewReader(dc)
			for range perDevice {
				if h, _, err := rawPacket(dr); err != nil || h != 0x40 {
					t.Errorf("%s: PUBACK expected: %x %v", id, h, err)
					return
				}
				acked.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			for j := range perDevice {
				body := mqttString(nil, e.scheme.AuthRequest(id))
				body = binary.BigEndian.AppendUint16(body, uint16(j+1))
				body = append(body, payload...)
				if _, err := dc.Write(append(remainingLength([]byte{0x32}, len(body)), body...)); err != nil {
					t.Errorf("%s: publish: %v", id, err)
					return
				}
			}
		}()
	}

	// The worker reads nothing until the broker has dropped or holds requests.
	lost := func() int64 { st := e.b.Stats(); return st.MessagesDropped + st.InflightDropped }
	testutil.WaitFor(t, "the worker's queue to fill", func() bool { return lost() > 0 || e.b.Stats().FlowHeld > 0 })

	const total = devices * perDevice
	got := 0
	for got+int(lost()) < total || acked.Load() < total {
		h, body, err := rawPacket(r)
		if err != nil {
			t.Fatalf("worker read after %d requests (%d acknowledged to devices, %d dropped): %v", got, acked.Load(), lost(), err)
		}
		if h>>4 != 3 {
			continue
		}
		got++
		if h&0x06 != 0 { // QoS 1: acknowledge
			tl := int(binary.BigEndian.Uint16(body))
			id := body[2+tl : 4+tl]
			if _, err := conn.Write([]byte{0x40, 2, id[0], id[1]}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if n := lost(); n != 0 || got != total {
		t.Fatalf("the worker got %d of %d requests, all acknowledged to the devices; the broker dropped %d", got, total, n)
	}
}
