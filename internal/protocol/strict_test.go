package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeRefusesNullEverywhere sets every field of every message, and every field of
// its nested objects and maps, to null in turn, found by reflection so that a field added
// later is covered too: the library would read null as the zero value, so every field
// type needs its own refusal (see strict).
func TestDecodeRefusesNullEverywhere(t *testing.T) {
	t.Parallel()
	failed := &AuthReply{V: 1, ID: "req-0001", ServerTime: testTime, Error: &ReplyError{Code: CodeBusy}}
	decoders := []struct {
		valid  any
		decode func([]byte) error
	}{
		{validRequest(), func(b []byte) error { _, err := DecodeAuthRequest(b); return err }},
		{validReply(), func(b []byte) error { _, err := DecodeAuthReply(b); return err }},
		{failed, func(b []byte) error { _, err := DecodeAuthReply(b); return err }},
		{validEvent(), func(b []byte) error { _, err := DecodeUploadEvent(b); return err }},
		{validCredentials(), func(b []byte) error { _, err := DecodeCredentials(b); return err }},
	}
	checked := 0
	for _, d := range decoders {
		base := marshal(t, d.valid)
		check := func(path, want string, set func(m map[string]any)) {
			t.Helper()
			var m map[string]any
			if err := json.Unmarshal([]byte(base), &m); err != nil {
				t.Fatal(err)
			}
			set(m)
			in := marshal(t, m)
			err := d.decode([]byte(in))
			if ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), want) {
				t.Errorf("%s set to null in %s: error %v, want one with %q", path, in, err, want)
			}
			checked++
		}
		st := reflect.TypeOf(d.valid).Elem()
		for i := range st.NumField() {
			f := st.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			check(name, `"`+name+`": want`, func(m map[string]any) { m[name] = nil })
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Map:
				check(name+".k", `"`+name+`": want a string, got null`, func(m map[string]any) { m[name] = map[string]any{"k": nil} })
			case reflect.Struct:
				if ft == reflect.TypeOf(testTime) {
					continue
				}
				for j := range ft.NumField() {
					sub, _, _ := strings.Cut(ft.Field(j).Tag.Get("json"), ",")
					path := name + "." + sub
					check(path, `"`+path+`": want`, func(m map[string]any) {
						obj, _ := m[name].(map[string]any)
						if obj == nil {
							obj = map[string]any{}
							m[name] = obj
						}
						obj[sub] = nil
					})
				}
			}
		}
	}
	if checked < 40 {
		t.Errorf("checked %d fields only", checked)
	}
}

// A failed reply to an unreadable request carries "id": "", but it must carry it (the
// hand-written reader did): the zero values of id and ok are valid there, so only the
// members' presence tells.
func TestDecodeFailedReplyRequiresMembers(t *testing.T) {
	t.Parallel()
	anonymous := marshal(t, &AuthReply{V: 1, ServerTime: testTime, Error: &ReplyError{Code: CodeInvalid}})
	if _, err := DecodeAuthReply([]byte(anonymous)); err != nil {
		t.Fatalf("DecodeAuthReply(%s): %v", anonymous, err)
	}
	checkInvalid(t, DecodeAuthReply, []badCase{
		{"no id", edit(t, anonymous, `"id":"",`, ``), `"id": is required`},
		{"no ok", edit(t, anonymous, `"ok":false,`, ``), `"ok": is required`},
	})
}
