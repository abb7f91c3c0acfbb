package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// fuzzDecode is the property shared by the decoder fuzz targets: decode never panics;
// every failure is a *Error with CodeInvalid; anything that decodes validates, encodes
// (with json.Marshal and Encode alike) and decodes again to an equal value.
func fuzzDecode[M Message](t *testing.T, in []byte, decode func([]byte) (M, error)) {
	v, err := decode(in)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeInvalid || pe.Message == "" {
			t.Fatalf("error %v (%T) is not a *Error with CodeInvalid and a message", err, err)
		}
		if any(v) != any(M(nil)) {
			t.Fatal("value returned with an error")
		}
		return
	}
	if err := Validate(v); err != nil {
		t.Fatalf("decoded value does not validate: %v", err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding %s: %v", in, err)
	}
	enc, err := Encode(v)
	if err != nil {
		t.Fatalf("Encode of decoded %s: %v", in, err)
	}
	if string(enc) != string(out) {
		t.Fatalf("Encode = %s, json.Marshal = %s", enc, out)
	}
	again, err := decode(out)
	if err != nil {
		t.Fatalf("re-decoding %s (from %s): %v", out, in, err)
	}
	if !equalTimes(v, again) {
		t.Fatalf("round trip changed the value:\n in  %s\n out %s\n %+v\n %+v", in, out, v, again)
	}
}

func FuzzDecodeAuthRequest(f *testing.F) {
	base, _ := json.Marshal(validRequest())
	f.Add(base)
	f.Add([]byte(strings.Replace(string(base), `"id":"req-0001"`, `"\u0069d":"r\u0065q"`, 1)))
	f.Add([]byte(strings.Replace(string(base), `"v":1`, `"v":2,"x":[{"y":null}]`, 1)))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"v":1e3}`))
	f.Add([]byte(`{"id":"\ud83d\ude00"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, in, DecodeAuthRequest) })
}

func FuzzDecodeAuthReply(f *testing.F) {
	ok, _ := json.Marshal(validReply())
	f.Add(ok)
	sealed := validReply()
	sealed.Credentials, sealed.Sealed = nil, strings.Repeat("A", 40)
	b, _ := json.Marshal(sealed)
	f.Add(b)
	b, _ = json.Marshal(&AuthReply{V: 1, ServerTime: testTime, Error: &ReplyError{Code: CodeBusy, Message: "<\u2028>", RetryAfterMs: 5}})
	f.Add(b)
	f.Add([]byte(strings.Replace(string(ok), "2026-03-14T15:09:26.535897Z", "2026-03-14T15:09:26.535897+00:00", 1)))
	f.Add([]byte(strings.Replace(string(ok), "2026-03-14T15:09:26.535897Z", "9999-12-31T23:59:59.999999999-23:59", 1)))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, in, DecodeAuthReply) })
}

func FuzzDecodeUploadEvent(f *testing.F) {
	b, _ := json.Marshal(validEvent())
	f.Add(b)
	b, _ = json.Marshal(&UploadEvent{V: 1, ID: "e", Device: "cam-01", Status: StatusFailed, Error: "x\u0001\\\"", Attempts: 3})
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"e","device":"cam-01","status":"failed","error":"x","metadata":{"a":"1","\u0061":"2"}}`))
	f.Add([]byte(`{"v":1,"id":"e","device":"cam-01","status":"failed","error":"x","recordedAt":"0000-01-01T00:00:00+01:00"}`))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, in, DecodeUploadEvent) })
}
