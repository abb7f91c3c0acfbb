package protocol

import (
	"encoding/json"
	"testing"
)

// BenchmarkDecodeFailedReply: a failed reply has "ok": false, whose presence decode
// checks apart (hasMember).
func BenchmarkDecodeFailedReply(b *testing.B) {
	in, _ := json.Marshal(&AuthReply{V: 1, ID: "req-0001", ServerTime: testTime,
		Error: &ReplyError{Code: CodeUnavailable, Message: "sts unavailable", RetryAfterMs: 1000}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeAuthReply(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCredentials: the opened plaintext of a sealed reply.
func BenchmarkDecodeCredentials(b *testing.B) {
	in, _ := json.Marshal(validCredentials())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCredentials(in); err != nil {
			b.Fatal(err)
		}
	}
}
