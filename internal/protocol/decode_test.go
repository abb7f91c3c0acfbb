package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type badCase struct {
	name string
	in   string
	want string // a substring of the error message, usually the field's name
}

// checkInvalid asserts that decode refuses every case with a *Error of CodeInvalid whose
// message contains the expected text, and returns no value.
func checkInvalid[T any](t *testing.T, decode func([]byte) (*T, error), cases []badCase) {
	t.Helper()
	for _, c := range cases {
		v, err := decode([]byte(c.in))
		var pe *Error
		switch {
		case err == nil:
			t.Errorf("%s: decoded %.80q without error: %+v", c.name, c.in, v)
		case !errors.As(err, &pe) || pe.Code != CodeInvalid:
			t.Errorf("%s: error %v (%T), want a *Error with CodeInvalid", c.name, err, err)
		case !strings.Contains(pe.Message, c.want):
			t.Errorf("%s: error %q does not mention %q", c.name, pe.Message, c.want)
		case v != nil:
			t.Errorf("%s: returned a value with the error", c.name)
		}
	}
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edit replaces the first old in s by new, failing if old is absent (so that a case
// cannot silently test the valid message).
func edit(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q not in %s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

func TestDecodeAuthRequestAccepts(t *testing.T) {
	t.Parallel()
	base := marshal(t, validRequest())
	for _, in := range []string{
		base,
		" \n\t" + base + " \r\n",
		// Any member order, whitespace anywhere.
		`{ "sig" : "` + testSig + `" , "mode":"wa","kid":"k1","nonce":"` + testNonce + `","ts":"2026-03-14T15:09:26Z","device":"cam-01","id":"req-0001","v":1 }`,
		// Escapes are decoded before checks and matching: "\u0069d" is "id".
		edit(t, base, `"id":"req-0001"`, `"\u0069d":"req\u002d0001"`),
	} {
		r, err := DecodeAuthRequest([]byte(in))
		if err != nil {
			t.Errorf("DecodeAuthRequest(%s): %v", in, err)
			continue
		}
		if *r != *validRequest() {
			t.Errorf("DecodeAuthRequest(%s) = %+v", in, r)
		}
	}
	for _, ts := range []string{"2026-03-14T15:09:26.1Z", "2026-03-14T15:09:26.123456789+08:00", "2024-02-29T23:59:59-00:00", "0001-01-01T00:00:00Z"} {
		in := edit(t, base, "2026-03-14T15:09:26Z", ts)
		if r, err := DecodeAuthRequest([]byte(in)); err != nil || r.TS != ts {
			t.Errorf("ts %q: %+v, %v", ts, r, err)
		}
	}
	for _, mode := range []string{"w", "r", "a", "rw", "war", "ra"} {
		in := edit(t, base, `"mode":"wa"`, `"mode":"`+mode+`"`)
		if r, err := DecodeAuthRequest([]byte(in)); err != nil || string(r.Mode) != mode {
			t.Errorf("mode %q: %+v, %v", mode, r, err)
		}
	}
	// A certificate request: cert instead of kid, a signature of 8 to 72 bytes.
	for _, sig := range []string{strings.Repeat("A", 11), strings.Repeat("A", 86), strings.Repeat("B", 96)} {
		in := edit(t, base, `"kid":"k1","sig":"`+testSig+`"`, `"cert":"MIIB","sig":"`+sig+`"`)
		if r, err := DecodeAuthRequest([]byte(in)); err != nil || r.Cert != "MIIB" || r.KID != "" {
			t.Errorf("certificate request with a %d-character signature: %+v, %v", len(sig), r, err)
		}
	}
	long := strings.Repeat("x", MaxIDLen)
	if _, err := DecodeAuthRequest([]byte(edit(t, base, "req-0001", long))); err != nil {
		t.Errorf("64-character ID: %v", err)
	}
}

func TestDecodeAuthRequestRefuses(t *testing.T) {
	t.Parallel()
	base := marshal(t, validRequest())
	without := func(field string) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(base), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, field)
		return marshal(t, m)
	}
	cases := []badCase{
		// Size, checked before parsing: even garbage gets the size error.
		{"oversize", base + strings.Repeat(" ", MaxAuthRequestSize-len(base)+1), "at most 4096"},
		{"oversize garbage", strings.Repeat("\xff", MaxAuthRequestSize+1), "at most 4096"},
		{"not UTF-8", edit(t, base, "req-0001", "req-\xff"), "UTF-8"},
		// Not one JSON object.
		{"empty", "", "JSON object"},
		{"whitespace", "  ", "JSON object"},
		{"null", "null", "JSON object"},
		{"array", "[" + base + "]", "JSON object"},
		{"string", `"x"`, "JSON object"},
		{"number", "1", "JSON object"},
		{"trailing object", base + "{}", "trailing data"},
		{"trailing garbage", base + "x", "trailing data"},
		{"two objects", base + " " + base, "trailing data"},
		// Syntax.
		{"unterminated object", strings.TrimSuffix(base, "}"), "malformed JSON"},
		{"unterminated string", `{"v":1,"id":"abc`, "unterminated string"},
		{"missing colon", edit(t, base, `"id":`, `"id" `), "want ':'"},
		{"missing comma", edit(t, base, `,"id"`, ` "id"`), "want ',' or '}'"},
		{"trailing comma", edit(t, base, `}`, `,}`), "want a member name"},
		{"leading comma", edit(t, base, `{`, `{,`), "want a member name"},
		{"unquoted key", edit(t, base, `"id":`, `id:`), "want a member name"},
		{"single quotes", edit(t, base, `"req-0001"`, `'req-0001'`), `"id": want a string`},
		{"raw control char", edit(t, base, "req-0001", "req\t0001"), "control character"},
		{"bad escape", edit(t, base, "req-0001", `req\x0001`), "invalid escape"},
		{"short unicode escape", edit(t, base, "req-0001", `req\u00`), `invalid \u escape`},
		{"NUL escape", edit(t, base, "req-0001", `req\u0000`), "NUL"},
		{"lone high surrogate", edit(t, base, "req-0001", `req\ud800`), "surrogate"},
		{"lone low surrogate", edit(t, base, "req-0001", `req\udc00x`), "surrogate"},
		{"bad number", edit(t, base, `"v":1`, `"v":-`), "invalid number"},
		{"leading zero", edit(t, base, `"v":1`, `"v":01`), "want ',' or '}'"},
		// Members: unknown (also by case), duplicate, null, wrong type.
		{"unknown field", edit(t, base, `"v":1,`, `"v":1,"extra":{"a":[1,2,{"b":null}]},`), `"extra": unknown field`},
		{"case variant", edit(t, base, `"id"`, `"ID"`), `"ID": unknown field`},
		{"duplicate", edit(t, base, `"v":1,`, `"v":1,"id":"other",`), `"id": appears more than once`},
		{"duplicate via escape", edit(t, base, `"v":1,`, `"v":1,"\u0069d":"other",`), `"id": appears more than once`},
		{"null id", edit(t, base, `"req-0001"`, `null`), `"id": want a string, got null`},
		{"numeric id", edit(t, base, `"req-0001"`, `7`), `"id": want a string, got a number`},
		{"string v", edit(t, base, `"v":1`, `"v":"1"`), `"v": want a number, got a string`},
		{"fractional v", edit(t, base, `"v":1`, `"v":1.0`), `"v": must be an integer`},
		{"exponent v", edit(t, base, `"v":1`, `"v":1e0`), `"v": must be an integer`},
		{"huge v", edit(t, base, `"v":1`, `"v":99999999999999999999`), `"v": 99999999999999999999 is out of range`},
		{"boolean v", edit(t, base, `"v":1`, `"v":true`), `"v": want a number, got a boolean`},
		{"object mode", edit(t, base, `"wa"`, `{}`), `"mode": want a string, got an object`},
		{"unknown skipped value malformed", edit(t, base, `"v":1,`, `"x":[1,,2],"v":1,`), "malformed JSON"},
		{"deep unknown", edit(t, base, `"v":1,`, `"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`,"v":1,`), "nested too deeply"},
		// Version: refused, and reported before unknown fields a newer version may add.
		{"version 2", edit(t, base, `"v":1`, `"v":2`), `unsupported protocol version 2`},
		{"version 0", edit(t, base, `"v":1`, `"v":0`), `unsupported protocol version 0`},
		{"version 2 with new field", edit(t, base, `"v":1,`, `"newField":true,"v":2,`), `unsupported protocol version 2`},
		// Required members.
		{"missing v", without("v"), `"v": is required`},
		{"missing id", without("id"), `"id": is required`},
		{"missing device", without("device"), `"device": is required`},
		{"missing ts", without("ts"), `"ts": is required`},
		{"missing nonce", without("nonce"), `"nonce": is required`},
		{"missing mode", without("mode"), `"mode": is required`},
		{"missing sig", without("sig"), `"sig": is required`},
		{"missing kid", without("kid"), `"kid": is required`},
		{"empty kid", edit(t, base, `"kid":"k1"`, `"kid":""`), `"kid": is required`},
		{"kid with dot", edit(t, base, `"kid":"k1"`, `"kid":"k.1"`), `"kid"`},
		{"kid with space", edit(t, base, `"kid":"k1"`, `"kid":"k 1"`), `"kid"`},
		{"long kid", edit(t, base, `"kid":"k1"`, `"kid":"`+strings.Repeat("k", MaxKeyIDLen+1)+`"`), `"kid"`},
		{"numeric kid", edit(t, base, `"kid":"k1"`, `"kid":1`), `"kid": want a string`},
		{"null kid", edit(t, base, `"kid":"k1"`, `"kid":null`), `"kid": want a string, got null`},
		{"non-ASCII kid", edit(t, base, `"kid":"k1"`, `"kid":"ké"`), `"kid"`},
		// Certificate requests.
		{"kid and cert", edit(t, base, `"kid":"k1"`, `"kid":"k1","cert":"AAAA"`), `"cert": must not be sent together with kid`},
		{"cert not base64url", edit(t, base, `"kid":"k1"`, `"cert":"AA+/"`), `"cert"`},
		{"cert padded", edit(t, base, `"kid":"k1"`, `"cert":"AAA="`), `"cert"`},
		{"cert not canonical", edit(t, base, `"kid":"k1"`, `"cert":"AB"`), `"cert"`},
		{"cert too large", edit(t, base, `"kid":"k1"`, `"cert":"`+strings.Repeat("A", 2740)+`"`), `"cert"`},
		{"cert sig too short", edit(t, base, `"kid":"k1","sig":"`+testSig+`"`, `"cert":"AAAA","sig":"AAAA"`), `"sig"`},
		{"cert sig too long", edit(t, base, `"kid":"k1","sig":"`+testSig+`"`, `"cert":"AAAA","sig":"`+strings.Repeat("A", 99)+`"`), `"sig"`},
		{"null cert", edit(t, base, `"kid":"k1"`, `"cert":null`), `"cert": want a string, got null`},
		{"empty object", `{}`, `is required`},
		// Formats.
		{"empty id", edit(t, base, "req-0001", ""), `"id"`},
		{"long id", edit(t, base, "req-0001", strings.Repeat("x", MaxIDLen+1)), `"id"`},
		{"id with dot", edit(t, base, "req-0001", "req.0001"), `"id"`},
		{"id with space", edit(t, base, "req-0001", "req 0001"), `"id"`},
		{"bad device", edit(t, base, "cam-01", "cam/01"), `"device"`},
		{"short device", edit(t, base, "cam-01", "c"), `"device"`},
		{"dotdot device", edit(t, base, "cam-01", ".."), `"device"`},
		{"wildcard device", edit(t, base, "cam-01", "cam+"), `"device"`},
		{"bad mode", edit(t, base, `"wa"`, `"x"`), `"mode"`},
		{"empty mode", edit(t, base, `"wa"`, `""`), `"mode"`},
		{"repeated mode", edit(t, base, `"wa"`, `"ww"`), `"mode"`},
		{"long mode", edit(t, base, `"wa"`, `"rwaw"`), `"mode"`},
		{"upper mode", edit(t, base, `"wa"`, `"W"`), `"mode"`},
	}
	for _, ts := range []string{"", "2026-03-14", "2026-03-14 15:09:26Z", "2026-03-14t15:09:26Z", "2026-03-14T15:09:26z",
		"2026-03-14T15:09:26", "2026-13-14T15:09:26Z", "2026-02-30T15:09:26Z", "2026-03-14T24:00:00Z",
		"2026-03-14T15:09:60Z", "2026-03-14T15:09:26+24:00", "2026-03-14T15:09:26+08:60", "2026-03-14T15:09:26+0800",
		"2026-03-14T15:09:26.Z", "2026-03-14T15:09:26.1234567890Z", "2026-03-14T15:09:26,5Z", "+2026-03-14T15:09:26Z",
		"1773500966", "2026-03-14T15:09:26ZZ", "2026-03-14T15:09:26Z "} {
		cases = append(cases, badCase{"ts " + ts, edit(t, base, "2026-03-14T15:09:26Z", ts), `"ts"`})
	}
	for _, nonce := range []string{"", testNonce[:21], testNonce + "A", testNonce + "==", testNonce[:20] + "==",
		testNonce[:21] + "+", testNonce[:21] + "/", testNonce[:21] + "B", // B has a low bit set: not canonical
		testNonce[:10] + `\n` + testNonce[10:21], strings.Repeat("A", 43)} {
		cases = append(cases, badCase{"nonce " + nonce, edit(t, base, testNonce, nonce), `"nonce"`})
	}
	for _, sig := range []string{"", testSig[:42], testSig + "A", testSig + "=", testSig[:42] + "B", testNonce,
		strings.Repeat("*", 43)} {
		cases = append(cases, badCase{"sig " + sig, edit(t, base, testSig, sig), `"sig"`})
	}
	checkInvalid(t, DecodeAuthRequest, cases)
}

func TestDecodeAuthReply(t *testing.T) {
	t.Parallel()
	ok := marshal(t, validReply())
	failed := marshal(t, &AuthReply{V: 1, ID: "req-0001", ServerTime: testTime,
		Error: &ReplyError{Code: CodeClockSkew, Message: "clock is 10 minutes behind"}})
	sealedReply := validReply()
	sealedReply.Credentials = nil
	sealedReply.Sealed = strings.Repeat("A", 40)
	sealed := marshal(t, sealedReply)
	for _, in := range []string{ok, failed, sealed,
		edit(t, failed, `"id":"req-0001"`, `"id":""`), // failure to an unreadable request
		edit(t, ok, `"prefix":"fleet/"`, `"prefix":""`),
		edit(t, ok, `,"prefix":"fleet/"`, ``), // prefix is optional
		edit(t, failed, `"message":"clock is 10 minutes behind"`, `"message":"x","retryAfterMs":86400000`),
	} {
		if _, err := DecodeAuthReply([]byte(in)); err != nil {
			t.Errorf("DecodeAuthReply(%s): %v", in, err)
		}
	}
	r, err := DecodeAuthReply([]byte(ok))
	if err != nil || !equalTimes(r, validReply()) {
		t.Errorf("DecodeAuthReply = %+v, %v", r, err)
	}

	cases := []badCase{
		{"oversize", ok + strings.Repeat(" ", MaxMessageSize), "at most 65536"},
		{"not UTF-8", edit(t, ok, "secret", "sec\xc0ret"), "UTF-8"},
		{"trailing", ok + "]", "trailing data"},
		{"version", edit(t, ok, `"v":1`, `"v":3`), "unsupported protocol version 3"},
		{"unknown", edit(t, ok, `"ok":true`, `"ok":true,"debug":"x"`), `"debug": unknown field`},
		{"unknown nested", edit(t, ok, `"accessKeyId"`, `"roleArn":"x","accessKeyId"`), `"credentials.roleArn": unknown field`},
		{"unknown in error", edit(t, failed, `"code"`, `"hint":"x","code"`), `"error.hint": unknown field`},
		{"duplicate ok", edit(t, ok, `"ok":true`, `"ok":true,"ok":false`), `"ok": appears more than once`},
		{"duplicate nested", edit(t, ok, `"region"`, `"bucket":"b","region"`), `"oss.bucket": appears more than once`},
		{"missing ok", edit(t, ok, `"ok":true,`, ``), `"ok": is required`},
		{"missing id", edit(t, ok, `"id":"req-0001",`, ``), `"id": is required`},
		{"missing serverTime", edit(t, ok, `"serverTime":"2026-03-14T15:09:26.535897Z",`, ``), `"serverTime": is required`},
		{"null ok", edit(t, ok, `"ok":true`, `"ok":null`), `"ok": want a boolean, got null`},
		{"string ok", edit(t, ok, `"ok":true`, `"ok":"true"`), `"ok": want a boolean`},
		{"bad serverTime", edit(t, ok, `2026-03-14T15:09:26.535897Z`, `now`), `"serverTime": must be an RFC 3339 time`},
		{"bad id", edit(t, ok, `req-0001`, `req/0001`), `"id"`},
		{"empty id on success", edit(t, ok, `"id":"req-0001"`, `"id":""`), `"id"`},
		{"ok without credentials", edit(t, ok, marshal(t, validCredentials()), `null`), `"credentials": want an object, got null`},
		{"ok without credentials or sealed", strings.Replace(ok, `"credentials":`+marshal(t, validCredentials())+",", "", 1), `"credentials"`},
		{"credentials and sealed", edit(t, ok, `"oss"`, `"sealed":"`+strings.Repeat("A", 40)+`","oss"`), `"sealed": must not be sent together`},
		{"ok without oss", edit(t, ok, `,"oss":`+marshal(t, validOSS()), ``), `"oss": is required`},
		{"ok with error", edit(t, ok, `"oss"`, `"error":{"code":"busy"},"oss"`), `"error": must be absent`},
		{"credentials not object", edit(t, ok, marshal(t, validCredentials()), `"creds"`), `"credentials": want an object, got a string`},
		{"credentials missing token", edit(t, ok, `"securityToken":"token+/=",`, ``), `"credentials.securityToken": is required`},
		{"credentials empty key", edit(t, ok, `"STS.NUabc"`, `""`), `"credentials.accessKeyId": is required`},
		{"credentials bad expiration", edit(t, ok, `2026-03-14T16:09:26.535897Z`, `2026-03-14T16:09:26.535897`), `"credentials.expiration": must be an RFC 3339 time`},
		{"credentials zero expiration", edit(t, ok, `2026-03-14T16:09:26.535897Z`, `0001-01-01T00:00:00Z`), `"credentials.expiration": is required`},
		{"sealed padded", edit(t, sealed, strings.Repeat("A", 40), strings.Repeat("A", 38)+"=="), `"sealed"`},
		{"sealed std alphabet", edit(t, sealed, strings.Repeat("A", 40), strings.Repeat("A", 39)+"+"), `"sealed"`},
		{"sealed too short", edit(t, sealed, strings.Repeat("A", 40), "AAAA"), `"sealed"`},
		{"sealed not canonical", edit(t, sealed, strings.Repeat("A", 40), strings.Repeat("A", 38)+"B"), `"sealed"`},
		{"sealed empty", edit(t, sealed, strings.Repeat("A", 40), ""), `"credentials"`},
		{"oss missing bucket", edit(t, ok, `"bucket":"clips",`, ``), `"oss.bucket": is required`},
		{"oss bad bucket", edit(t, ok, `"bucket":"clips"`, `"bucket":"Clips_1"`), `"oss.bucket"`},
		{"oss empty endpoint", edit(t, ok, `"http://127.0.0.1:9000"`, `""`), `"oss.endpoint"`},
		{"oss empty region", edit(t, ok, `"cn-hangzhou"`, `""`), `"oss.region"`},
		{"oss bad prefix", edit(t, ok, `"fleet/"`, `"fleet"`), `"oss.prefix"`},
		{"oss absolute prefix", edit(t, ok, `"fleet/"`, `"/fleet/"`), `"oss.prefix"`},
		{"failed without error", edit(t, failed, `,"error":{"code":"clock_skew","message":"clock is 10 minutes behind"}`, ``), `"error": is required when ok is false`},
		{"failed with oss", edit(t, failed, `"error"`, `"oss":`+marshal(t, validOSS())+`,"error"`), `must not carry`},
		{"failed with sealed", edit(t, failed, `"error"`, `"sealed":"`+strings.Repeat("A", 40)+`","error"`), `must not carry`},
		{"failed with rekey", edit(t, failed, `"error"`, `"rekey":"`+strings.Repeat("A", 40)+`","error"`), `must not carry`},
		{"rekey too short", edit(t, ok, `"oss"`, `"rekey":"AAAA","oss"`), `"rekey"`},
		{"rekey padded", edit(t, ok, `"oss"`, `"rekey":"`+strings.Repeat("A", 38)+`==","oss"`), `"rekey"`},
		{"rekey not a string", edit(t, ok, `"oss"`, `"rekey":{},"oss"`), `"rekey": want a string`},
		{"unknown code", edit(t, failed, `"clock_skew"`, `"try_again"`), `"error.code": unknown code "try_again"`},
		{"upper code", edit(t, failed, `"clock_skew"`, `"CLOCK_SKEW"`), `"error.code"`},
		{"missing code", edit(t, failed, `"code":"clock_skew",`, ``), `"error.code": is required`},
		{"negative retry", edit(t, failed, `"code"`, `"retryAfterMs":-1,"code"`), `"error.retryAfterMs"`},
		{"huge retry", edit(t, failed, `"code"`, `"retryAfterMs":86400001,"code"`), `"error.retryAfterMs"`},
		{"fractional retry", edit(t, failed, `"code"`, `"retryAfterMs":1.5,"code"`), `"error.retryAfterMs": must be an integer`},
		{"long message", edit(t, failed, `clock is 10 minutes behind`, strings.Repeat("m", MaxMessageLen+1)), `"error.message"`},
		{"error not object", edit(t, failed, `{"code":"clock_skew","message":"clock is 10 minutes behind"}`, `"clock_skew"`), `"error": want an object`},
	}
	checkInvalid(t, DecodeAuthReply, cases)
}

func TestDecodeUploadEvent(t *testing.T) {
	t.Parallel()
	done := marshal(t, validEvent())
	failed := marshal(t, &UploadEvent{V: 1, ID: "evt_02", Device: "cam-01", Status: StatusFailed, Error: "quota exceeded", Attempts: 9})
	for _, in := range []string{done, failed,
		edit(t, done, `"metadata":{"camera":"front door","codec":"h264"}`, `"metadata":{}`),
		edit(t, failed, `"size":0,`, ``), // size is optional when failed
		edit(t, done, `"crc64":"18446744073709551615"`, `"crc64":"0"`),
		edit(t, done, `"size":1048576`, `"size":0`),
	} {
		if _, err := DecodeUploadEvent([]byte(in)); err != nil {
			t.Errorf("DecodeUploadEvent(%s): %v", in, err)
		}
	}
	ev, err := DecodeUploadEvent([]byte(done))
	if err != nil || !equalTimes(ev, validEvent()) {
		t.Errorf("DecodeUploadEvent = %+v, %v", ev, err)
	}
	ev, err = DecodeUploadEvent([]byte(edit(t, done, `"metadata":{"camera":"front door","codec":"h264"}`, `"metadata":{}`)))
	if err != nil || ev.Metadata != nil {
		t.Errorf("empty metadata decodes to %#v, %v; want nil", ev.Metadata, err)
	}

	var many strings.Builder
	for i := range MaxMetadata + 1 {
		fmt.Fprintf(&many, `"k%d":"v",`, i)
	}
	metadata := `"metadata":{"camera":"front door","codec":"h264"}`
	cases := []badCase{
		{"oversize", done + strings.Repeat(" ", MaxMessageSize), "at most 65536"},
		{"trailing", done + "0", "trailing data"},
		{"version", edit(t, done, `"v":1`, `"v":2`), "unsupported protocol version 2"},
		{"unknown", edit(t, done, `"attempts"`, `"retries":1,"attempts"`), `"retries": unknown field`},
		{"duplicate", edit(t, done, `"attempts":2`, `"attempts":2,"attempts":3`), `"attempts": appears more than once`},
		{"missing id", edit(t, done, `"id":"evt_01",`, ``), `"id": is required`},
		{"missing device", edit(t, done, `"device":"cam-01",`, ``), `"device": is required`},
		{"missing status", edit(t, done, `"status":"completed",`, ``), `"status": is required`},
		{"bad id", edit(t, done, `evt_01`, `evt 01`), `"id"`},
		{"bad device", edit(t, done, `"device":"cam-01"`, `"device":"cam#01"`), `"device"`},
		{"bad status", edit(t, done, `"completed"`, `"done"`), `"status"`},
		{"completed missing size", edit(t, done, `"size":1048576,`, ``), `"size": is required when status is "completed"`},
		{"completed missing crc64", edit(t, done, `"crc64":"18446744073709551615",`, ``), `"crc64": is required when status is "completed"`},
		{"completed missing bucket", edit(t, done, `"bucket":"clips",`, ``), `"bucket": is required when status is "completed"`},
		{"completed missing key", edit(t, done, `"key":"fleet/cam-01/2026/03/14/clip-1.mp4",`, ``), `"key": is required when status is "completed"`},
		{"completed missing uploadedAt", edit(t, done, `"uploadedAt":"2026-03-14T15:09:26.535897Z",`, ``), `"uploadedAt": is required when status is "completed"`},
		{"completed with error", edit(t, done, `"attempts"`, `"error":"x","attempts"`), `"error": must be absent`},
		{"negative size", edit(t, done, `1048576`, `-1`), `"size": -1 is out of range`},
		{"fractional size", edit(t, done, `1048576`, `1.5`), `"size": must be an integer`},
		{"string size", edit(t, done, `1048576`, `"1048576"`), `"size": want a number`},
		{"huge size", edit(t, done, `1048576`, `9223372036854775808`), `"size"`},
		{"crc64 overflow", edit(t, done, `18446744073709551615`, `18446744073709551616`), `"crc64"`},
		{"crc64 leading zero", edit(t, done, `18446744073709551615`, `0123`), `"crc64"`},
		{"crc64 negative", edit(t, done, `18446744073709551615`, `-1`), `"crc64"`},
		{"crc64 hex", edit(t, done, `18446744073709551615`, `ffff`), `"crc64"`},
		{"crc64 plus", edit(t, done, `18446744073709551615`, `+1`), `"crc64"`},
		{"crc64 number", edit(t, done, `"18446744073709551615"`, `123`), `"crc64": want a string`},
		{"bad bucket", edit(t, done, `"bucket":"clips"`, `"bucket":"-clips"`), `"bucket"`},
		{"empty key", edit(t, done, `"fleet/cam-01/2026/03/14/clip-1.mp4"`, `""`), `"key"`},
		{"absolute key", edit(t, done, `"fleet/cam-01/2026/03/14/clip-1.mp4"`, `"/fleet/x"`), `"key"`},
		{"long key", edit(t, done, `fleet/cam-01/2026/03/14/clip-1.mp4`, strings.Repeat("k", MaxObjectKeyLen+1)), `"key"`},
		{"long content type", edit(t, done, `video/mp4`, strings.Repeat("t", MaxContentTypeLen+1)), `"contentType"`},
		{"bad recordedAt", edit(t, done, `"recordedAt":"2026-03-14T15:08:26.535897Z"`, `"recordedAt":"2026-03-14T15:08:26+8"`), `"recordedAt": must be an RFC 3339 time`},
		{"zero uploadedAt", edit(t, done, `2026-03-14T15:09:26.535897Z`, `0001-01-01T00:00:00Z`), `"uploadedAt"`},
		{"negative attempts", edit(t, done, `"attempts":2`, `"attempts":-2`), `"attempts"`},
		{"failed without error", edit(t, failed, `,"error":"quota exceeded"`, ``), `"error": is required`},
		{"failed empty error", edit(t, failed, `"quota exceeded"`, `""`), `"error": is required`},
		{"long error", edit(t, failed, `quota exceeded`, strings.Repeat("e", MaxMessageLen+1)), `"error"`},
		{"metadata too many", edit(t, done, metadata, `"metadata":{`+strings.TrimSuffix(many.String(), ",")+`}`), `"metadata": more than 32 entries`},
		{"metadata long key", edit(t, done, `"camera"`, `"`+strings.Repeat("k", MaxMetadataLen+1)+`"`), `"metadata"`},
		{"metadata long value", edit(t, done, `"front door"`, `"`+strings.Repeat("v", MaxMetadataLen+1)+`"`), `"metadata"`},
		{"metadata empty key", edit(t, done, `"camera"`, `""`), `"metadata"`},
		{"metadata number", edit(t, done, `"front door"`, `1`), `"metadata": want a string, got a number`},
		{"metadata null", edit(t, done, `"front door"`, `null`), `"metadata": want a string, got null`},
		{"metadata nested", edit(t, done, `"front door"`, `{"a":"b"}`), `"metadata": want a string, got an object`},
		{"metadata duplicate", edit(t, done, `"codec":"h264"`, `"camera":"back"`), `"metadata": key "camera" appears more than once`},
		{"metadata array", edit(t, done, `{"camera":"front door","codec":"h264"}`, `["a"]`), `"metadata": want an object, got an array`},
		{"metadata null object", edit(t, done, `{"camera":"front door","codec":"h264"}`, `null`), `"metadata": want an object, got null`},
	}
	checkInvalid(t, DecodeUploadEvent, cases)
}

func TestDecodeAuthRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	b := []byte(marshal(t, validRequest()))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := DecodeAuthRequest(b); err != nil {
			t.Fatal(err)
		}
	})
	// The request itself and one string per string field (seven).
	if allocs > 8 {
		t.Errorf("DecodeAuthRequest: %v allocations, want at most 8", allocs)
	}
}

func BenchmarkDecodeAuthRequest(b *testing.B) {
	in := []byte(`{"v":1,"id":"req-0001","device":"cam-01","ts":"2026-03-14T15:09:26Z","nonce":"` + testNonce + `","mode":"wa","kid":"k1","sig":"` + testSig + `"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := DecodeAuthRequest(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAuthReply(b *testing.B) {
	in, _ := json.Marshal(validReply())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeAuthReply(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUploadEvent(b *testing.B) {
	in, _ := json.Marshal(validEvent())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeUploadEvent(in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeRekey(t *testing.T) {
	t.Parallel()
	key := strings.Repeat("A", 43)
	good := `{"kid":"k2","connect":"` + key + `","request":"` + key + `"}`
	if k, err := DecodeRekey([]byte(good)); err != nil || k.KID != "k2" {
		t.Fatalf("DecodeRekey(%s) = %+v, %v", good, k, err)
	}
	checkInvalid(t, DecodeRekey, []badCase{
		{"empty", "", "JSON object"},
		{"garbage", "\x00\xff", "JSON object"},
		{"missing kid", `{"connect":"` + key + `","request":"` + key + `"}`, `"kid"`},
		{"bad kid", edit(t, good, `"k2"`, `"k.2"`), `"kid"`},
		{"long kid", edit(t, good, `"k2"`, `"`+strings.Repeat("k", MaxKeyIDLen+1)+`"`), `"kid"`},
		{"missing connect", `{"kid":"k2","request":"` + key + `"}`, `"connect"`},
		{"short connect", edit(t, good, `"connect":"`+key, `"connect":"`+key[:42]), `"connect"`},
		{"request not base64url", edit(t, good, `"request":"`+key, `"request":"`+key[:42]+"+"), `"request"`},
		{"unknown field", edit(t, good, `"kid"`, `"fleet":"x","kid"`), `"fleet": unknown field`},
		{"duplicate", edit(t, good, `"kid":"k2"`, `"kid":"k2","kid":"k3"`), "more than once"},
		{"trailing", good + "{}", "trailing data"},
	})
}
