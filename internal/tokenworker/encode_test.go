package tokenworker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/protocol"
)

// marshalled is the reference: what encoding/json writes for rep (with sealed set as a
// string when given as bytes).
func marshalled(t testing.TB, rep protocol.AuthReply, sealed []byte) []byte {
	t.Helper()
	if len(sealed) > 0 && rep.Sealed == "" {
		rep.Sealed = base64.RawURLEncoding.EncodeToString(sealed)
	}
	b, err := json.Marshal(&rep)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkSame(t testing.TB, rep protocol.AuthReply, sealed []byte) {
	t.Helper()
	want := marshalled(t, rep, sealed)
	got := appendReply(nil, &rep, sealed)
	if !bytes.Equal(got, want) {
		t.Fatalf("appendReply differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
	cr := rep.Credentials
	if cr == nil {
		cr = &protocol.Credentials{AccessKeyID: rep.ID, Expiration: rep.ServerTime}
	}
	want, err := json.Marshal(cr)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendCredentials(nil, cr); !bytes.Equal(got, want) {
		t.Fatalf("appendCredentials differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
}

func TestAppendReplyMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	tricky := []string{"", "plain", `q"uote`, `back\slash`, "ctl\x00\x01\x1f\x7f", "\b\f\n\r\t",
		"<html>&amp;", "line\u2028sep\u2029", "bad\xffutf8\xc3", "日本語", "emoji😀", "\xed\xa0\x80"}
	times := []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 5*3600+30*60)),
		time.Date(1999, 12, 31, 23, 59, 59, 1, time.FixedZone("y", -8*3600)),
	}
	for i, s := range tricky {
		ts := times[i%len(times)]
		checkSame(t, protocol.AuthReply{
			V: 1, ID: s, OK: true, ServerTime: ts,
			Credentials: &protocol.Credentials{AccessKeyID: s, AccessKeySecret: s + "x", SecurityToken: "t" + s, Expiration: ts},
			OSS:         &protocol.OSSInfo{Endpoint: s, Region: s, Bucket: s, Prefix: s},
		}, nil)
		checkSame(t, protocol.AuthReply{V: 1, ID: s, OK: true, ServerTime: ts, Sealed: s,
			OSS: &protocol.OSSInfo{Endpoint: "http://127.0.0.1:1"}}, nil)
		checkSame(t, protocol.AuthReply{V: 1, ID: s, OK: true, ServerTime: ts,
			OSS: &protocol.OSSInfo{}}, []byte(s+"sealed-bytes\x00\xff"))
		checkSame(t, protocol.AuthReply{V: 1, ID: s, OK: true, ServerTime: ts, Rekey: s + "rekey",
			OSS: &protocol.OSSInfo{}}, []byte(s+"sealed"))
		for _, retry := range []int64{0, 1, 86400000} {
			checkSame(t, protocol.AuthReply{V: 1, ID: s, ServerTime: ts,
				Error: &protocol.ReplyError{Code: protocol.CodeBusy, Message: s, RetryAfterMs: retry}}, nil)
		}
	}
}

func FuzzAppendReply(f *testing.F) {
	f.Add("id", "message", "secret", int64(5), int64(1700000000123456789), []byte("sealed"))
	f.Add("\u2028<>", "\xff\x00", `"\`, int64(-1), int64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, id, msg, secret string, retry, unixNano int64, sealed []byte) {
		ts := time.Unix(0, unixNano).UTC()
		checkSame(t, protocol.AuthReply{V: 1, ID: id, OK: true, ServerTime: ts,
			Credentials: &protocol.Credentials{AccessKeyID: id, AccessKeySecret: secret, SecurityToken: msg, Expiration: ts},
			OSS:         &protocol.OSSInfo{Endpoint: msg, Region: id, Bucket: secret, Prefix: msg}}, nil)
		checkSame(t, protocol.AuthReply{V: 1, ID: id, OK: true, ServerTime: ts, OSS: &protocol.OSSInfo{}}, sealed)
		checkSame(t, protocol.AuthReply{V: 1, ID: id, OK: true, ServerTime: ts, Rekey: msg, OSS: &protocol.OSSInfo{}}, sealed)
		checkSame(t, protocol.AuthReply{V: 1, ID: id, ServerTime: ts,
			Error: &protocol.ReplyError{Code: protocol.Code(secret), Message: msg, RetryAfterMs: retry}}, nil)
	})
}
