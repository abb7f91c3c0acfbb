package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	testNonce = base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef"))
	testSig   = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, 32))
	testTime  = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
)

func validRequest() *AuthRequest {
	return &AuthRequest{V: 1, ID: "req-0001", Device: "cam-01", TS: "2026-03-14T15:09:26Z",
		Nonce: testNonce, Mode: "wa", KID: "k1", Sig: testSig}
}

func validCredentials() *Credentials {
	return &Credentials{AccessKeyID: "STS.NUabc", AccessKeySecret: "secret", SecurityToken: "token+/=",
		Expiration: testTime.Add(time.Hour)}
}

func validOSS() *OSSInfo {
	return &OSSInfo{Endpoint: "http://127.0.0.1:9000", Region: "cn-hangzhou", Bucket: "clips", Prefix: "fleet/"}
}

func validReply() *AuthReply {
	return &AuthReply{V: 1, ID: "req-0001", OK: true, ServerTime: testTime, Credentials: validCredentials(), OSS: validOSS()}
}

func validEvent() *UploadEvent {
	return &UploadEvent{V: 1, ID: "evt_01", Device: "cam-01", Status: StatusCompleted, Bucket: "clips",
		Key: "fleet/cam-01/2026/03/14/clip-1.mp4", Size: 1 << 20, CRC64: "18446744073709551615",
		ContentType: "video/mp4", RecordedAt: testTime.Add(-time.Minute), UploadedAt: testTime, Attempts: 2,
		Metadata: map[string]string{"camera": "front door", "codec": "h264"}}
}

// equalTimes compares a and b (pointers to the same type) as values, comparing times by
// instant (a zone may come back as UTC or Local with the same offset).
func equalTimes(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if bytes.Equal(ja, jb) {
		return true
	}
	norm := func(v any) any {
		c := reflect.New(reflect.TypeOf(v).Elem())
		c.Elem().Set(reflect.ValueOf(v).Elem())
		normalize(c.Elem())
		return c.Interface()
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			c := reflect.New(v.Type().Elem())
			c.Elem().Set(v.Elem())
			normalize(c.Elem())
			v.Set(c)
		}
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			v.Set(reflect.ValueOf(t.UTC()))
			return
		}
		for i := range v.NumField() {
			normalize(v.Field(i))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	sealed := validReply()
	sealed.Credentials = nil
	sealed.Sealed = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 80))
	sealed.OSS.Prefix = ""
	failed := &AuthReply{V: 1, ID: "req-0001", ServerTime: testTime,
		Error: &ReplyError{Code: CodeBusy, Message: "token workers overloaded", RetryAfterMs: 1500}}
	anonymous := &AuthReply{V: 1, ServerTime: testTime, Error: &ReplyError{Code: CodeInvalid, Message: "unreadable request"}}
	failedEvent := &UploadEvent{V: 1, ID: "evt_02", Device: "cam-01", Status: StatusFailed, Error: "disk full <&>\u2028\x01",
		Attempts: 5}
	zoned := validEvent()
	zoned.UploadedAt = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 8*3600))
	zoned.Size = 0
	zoned.CRC64 = "0"
	zoned.Metadata = nil

	msgs := []any{validRequest(), validReply(), sealed, failed, anonymous, validEvent(), failedEvent, zoned}
	for _, m := range msgs {
		var b []byte
		var got any
		var err error
		switch m := m.(type) {
		case *AuthRequest:
			if b, err = Encode(m); err == nil {
				got, err = DecodeAuthRequest(b)
			}
		case *AuthReply:
			if b, err = Encode(m); err == nil {
				got, err = DecodeAuthReply(b)
			}
		case *UploadEvent:
			if b, err = Encode(m); err == nil {
				got, err = DecodeUploadEvent(b)
			}
		}
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !equalTimes(m, got) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", b, got, m)
		}
		// json.Marshal gives the same wire form as Encode.
		if j, _ := json.Marshal(m); !bytes.Equal(j, b) {
			t.Errorf("json.Marshal = %s, Encode = %s", j, b)
		}
	}
}

// TestWireForm pins the field names of docs/ARCHITECTURE.md (Messages).
func TestWireForm(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		m    any
		want string
	}{
		{validRequest(), `{"v":1,"id":"req-0001","device":"cam-01","ts":"2026-03-14T15:09:26Z","nonce":"` + testNonce + `","mode":"wa","kid":"k1","sig":"` + testSig + `"}`},
		{validReply(), `{"v":1,"id":"req-0001","ok":true,"serverTime":"2026-03-14T15:09:26.535897Z","credentials":{"accessKeyId":"STS.NUabc","accessKeySecret":"secret","securityToken":"token+/=","expiration":"2026-03-14T16:09:26.535897Z"},"oss":{"endpoint":"http://127.0.0.1:9000","region":"cn-hangzhou","bucket":"clips","prefix":"fleet/"}}`},
		{&AuthReply{V: 1, ID: "r", ServerTime: testTime, Error: &ReplyError{Code: CodeRateLimited, Message: "slow down", RetryAfterMs: 250}},
			`{"v":1,"id":"r","ok":false,"serverTime":"2026-03-14T15:09:26.535897Z","error":{"code":"rate_limited","message":"slow down","retryAfterMs":250}}`},
		{validEvent(), `{"v":1,"id":"evt_01","device":"cam-01","status":"completed","bucket":"clips","key":"fleet/cam-01/2026/03/14/clip-1.mp4","size":1048576,"crc64":"18446744073709551615","contentType":"video/mp4","recordedAt":"2026-03-14T15:08:26.535897Z","uploadedAt":"2026-03-14T15:09:26.535897Z","attempts":2,"metadata":{"camera":"front door","codec":"h264"}}`},
		{&UploadEvent{V: 1, ID: "e", Device: "cam-01", Status: StatusFailed, Error: "boom"},
			`{"v":1,"id":"e","device":"cam-01","status":"failed","size":0,"error":"boom"}`},
	} {
		got, err := json.Marshal(c.m)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("wire form:\n got %s\nwant %s", got, c.want)
		}
	}
}

func TestSigningString(t *testing.T) {
	t.Parallel()
	r := validRequest()
	want := "clipgate-auth-v1\n1\nreq-0001\ncam-01\n2026-03-14T15:09:26Z\n" + testNonce + "\nwa\nk1"
	if got := string(r.SigningString()); got != want {
		t.Errorf("SigningString() = %q, want %q", got, want)
	}
	// Every field is covered: changing any one changes the string.
	base := string(r.SigningString())
	for i, mutate := range []func(*AuthRequest){
		func(r *AuthRequest) { r.V = 2 },
		func(r *AuthRequest) { r.ID += "x" },
		func(r *AuthRequest) { r.Device += "x" },
		func(r *AuthRequest) { r.TS = "2026-03-14T15:09:27Z" },
		func(r *AuthRequest) { r.Nonce = testSig[:22] },
		func(r *AuthRequest) { r.Mode = "w" },
		func(r *AuthRequest) { r.KID = "k2" },
		// A field cannot slide into its neighbour: the separators are kept.
		func(r *AuthRequest) { r.Mode, r.KID = "w", "ak1" },
	} {
		m := validRequest()
		mutate(m)
		if string(m.SigningString()) == base {
			t.Errorf("mutation %d does not change the signing string", i)
		}
	}
	// A certificate request has its own tag and covers the certificate.
	c := validRequest()
	c.KID, c.Cert = "", "MIIB"
	if got, want := string(c.SigningString()), "clipgate-auth-cert-v1\n1\nreq-0001\ncam-01\n2026-03-14T15:09:26Z\n"+testNonce+"\nwa\nMIIB"; got != want {
		t.Errorf("certificate SigningString() = %q, want %q", got, want)
	}
	// The signature itself is not covered.
	m := validRequest()
	m.Sig = strings.Repeat("A", 43)
	if string(m.SigningString()) != base {
		t.Error("the signing string covers sig")
	}
	if got := r.Time(); !got.Equal(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)) {
		t.Errorf("Time() = %v", got)
	}
	if got := (&AuthRequest{TS: "yesterday"}).Time(); !got.IsZero() {
		t.Errorf("Time() of a bad TS = %v, want zero", got)
	}
}

func TestCodes(t *testing.T) {
	t.Parallel()
	all := []Code{CodeInvalid, CodeUnauthenticated, CodeDenied, CodeRevoked, CodeClockSkew, CodeReplay,
		CodeRateLimited, CodeBusy, CodeUnavailable, CodeInternal, CodeQuotaExceeded}
	want := []string{"invalid", "unauthenticated", "denied", "revoked", "clock_skew", "replay", "rate_limited",
		"busy", "unavailable", "internal", "quota_exceeded"}
	for i, c := range all {
		if string(c) != want[i] || !c.Valid() {
			t.Errorf("code %q: want %q and valid", c, want[i])
		}
	}
	for _, c := range []Code{"", "INVALID", "ok", "timeout"} {
		if c.Valid() {
			t.Errorf("Code(%q).Valid() = true", c)
		}
	}
	e := &Error{Code: CodeDenied, Message: "no"}
	if e.Error() != "denied: no" {
		t.Errorf("Error() = %q", e.Error())
	}
	if ErrorCode(nil) != "" || ErrorCode(errors.New("x")) != CodeInternal || ErrorCode(fmt.Errorf("w: %w", e)) != CodeDenied {
		t.Error("ErrorCode")
	}
	re := &ReplyError{Code: CodeBusy, Message: "later", RetryAfterMs: 1500}
	if re.Error() != "busy: later" || re.RetryAfter() != 1500*time.Millisecond {
		t.Errorf("ReplyError: %q %v", re.Error(), re.RetryAfter())
	}
	if (&ReplyError{Code: CodeReplay}).Error() != "replay" {
		t.Error("ReplyError without message")
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.Nonce = "short"
	if _, err := Encode(r); ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), `"nonce"`) {
		t.Errorf("Encode(bad nonce) = %v", err)
	}
	// The largest metadata allowed fits, unless JSON escaping ('<' is 6 bytes on the
	// wire) pushes the event over the size a receiver accepts.
	ev := validEvent()
	ev.Metadata = map[string]string{}
	for i := range MaxMetadata {
		ev.Metadata[fmt.Sprintf("%0*d", MaxMetadataLen, i)] = strings.Repeat("v", MaxMetadataLen)
	}
	b, err := Encode(ev)
	if err != nil {
		t.Fatalf("Encode(large valid event): %v", err)
	}
	if _, err := DecodeUploadEvent(b); err != nil {
		t.Errorf("decode large valid event: %v", err)
	}
	clear(ev.Metadata)
	for i := range MaxMetadata {
		ev.Metadata[fmt.Sprintf("%s%02d", strings.Repeat("<", MaxMetadataLen-2), i)] = strings.Repeat("<", MaxMetadataLen)
	}
	if err := ValidateUploadEvent(ev); err != nil {
		t.Fatalf("escaped event does not validate: %v", err)
	}
	if _, err := Encode(ev); ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), "at most 65536") {
		t.Errorf("Encode(oversize event) = %v, want a size error", err)
	}
}

// Object keys are UTF-8 (OSS's rule): the clip names the device kit keeps as recorded
// (Unicode, spaces, '#', '?', '%') validate and survive the wire; invalid UTF-8 does not
// validate (json.Marshal would silently change it).
func TestUnicodeObjectKeys(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"clips/cam-01/2025/05/04/门口 camera #1.mp4",
		"clips/cam-01/2025/05/04/50% & more?x=1+2.ts",
		"clips/cam-01/2025/05/04/emoji 📹~0123456789abcdef.mp4",
		"clips/cam-01/2025/05/04/<script>\"'.mp4",
		strings.Repeat("门", MaxObjectKeyLen/3),
	} {
		ev := validEvent()
		ev.Key = key
		b, err := Encode(ev)
		if err != nil {
			t.Fatalf("Encode(key %q): %v", key, err)
		}
		got, err := DecodeUploadEvent(b)
		if err != nil || got.Key != key {
			t.Fatalf("round trip of %q: %q, %v", key, got.Key, err)
		}
	}
	// The same key with its characters escaped on the wire.
	got, err := DecodeUploadEvent([]byte(strings.Replace(marshal(t, validEvent()), "clip-1.mp4", `\u95e8\u53e3 camera #1.mp4`, 1)))
	if err != nil || got.Key != "fleet/cam-01/2026/03/14/门口 camera #1.mp4" {
		t.Errorf("escaped key: %q, %v", got.Key, err)
	}
	for _, key := range []string{"clips/bad\xffbyte.mp4", "clips/\xc3", "\xe9t\xe9.mp4", strings.Repeat("门", MaxObjectKeyLen/3) + "x"} {
		ev := validEvent()
		ev.Key = key
		if err := ValidateUploadEvent(ev); ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), `"key"`) {
			t.Errorf("Validate(key %q) = %v", key, err)
		}
		if _, err := Encode(ev); err == nil {
			t.Errorf("Encode(key %q) accepted", key)
		}
	}
	// On the wire: a lone surrogate escape is not UTF-8 either.
	if _, err := DecodeUploadEvent([]byte(strings.Replace(marshal(t, validEvent()), "clip-1.mp4", `\ud800.mp4`, 1))); err == nil {
		t.Error("a key with a lone surrogate decoded")
	}
}

func TestDecodeCredentials(t *testing.T) {
	t.Parallel()
	b, _ := json.Marshal(validCredentials())
	c, err := DecodeCredentials(b)
	if err != nil || !equalTimes(c, validCredentials()) {
		t.Fatalf("DecodeCredentials(%s) = %+v, %v", b, c, err)
	}
	for _, in := range []string{
		`{}`,
		`{"accessKeyId":"a","accessKeySecret":"s","securityToken":"t"}`,
		`{"accessKeyId":"a","accessKeySecret":"s","securityToken":"t","expiration":"2026-01-01T00:00:00Z","x":1}`,
		`{"accessKeyId":"a","accessKeySecret":"s","securityToken":"t","expiration":"2026-01-01T00:00:00Z"} x`,
		`{"accessKeyId":"","accessKeySecret":"s","securityToken":"t","expiration":"2026-01-01T00:00:00Z"}`,
		`[]`,
	} {
		if _, err := DecodeCredentials([]byte(in)); ErrorCode(err) != CodeInvalid {
			t.Errorf("DecodeCredentials(%s) = %v, want invalid", in, err)
		}
	}
}
