package natsbus

import (
	"bytes"
	"testing"
)

// TestRetainedPayload decodes the gateway's retained records: the current format (flags
// header, raw body), a cleared message, the older JSON format, and garbage.
func TestRetainedPayload(t *testing.T) {
	t.Parallel()
	hdr := func(flags string) []byte {
		return []byte("NATS/1.0\r\nNmqtt-RTopic:a/b\r\nNmqtt-RFlags:" + flags + "\r\n\r\n")
	}
	for name, c := range map[string]struct {
		hdr, data, want []byte
		err             bool
	}{
		"current": {hdr: hdr("3"), data: []byte("clipgate-revocations-v1\n"), want: []byte("clipgate-revocations-v1\n")},
		"cleared": {hdr: hdr("-3"), data: nil, want: nil},
		"json":    {data: []byte(`{"topic":"a/b","msg":"aGVsbG8=","flags":3}`), want: []byte("hello")},
		"garbage": {data: []byte("\x00not json"), err: true},
		"badhdr":  {hdr: []byte("HTTP/1.1\r\n\r\n"), data: []byte("x"), err: true},
		"empty":   {data: nil, err: true},
	} {
		got, err := retainedPayload(c.hdr, c.data)
		if (err != nil) != c.err || !bytes.Equal(got, c.want) {
			t.Errorf("%s: %q, %v; want %q, error %v", name, got, err, c.want, c.err)
		}
	}
}
