package clipgatetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

// TestOptionsReachTheStack sets every field of Options and checks that the stack's
// options carry each one: a field added to Options and forgotten in inproc() fails here.
func TestOptionsReachTheStack(t *testing.T) {
	t.Parallel()
	scheme, err := topics.New("acme/cams")
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Unix(1, 0) }
	o := Options{
		Workers: 3, Bucket: "b-1", Prefix: "p/", NoPrefix: true, Topics: scheme, Dir: "d",
		Now: now, STSRate: 2.5, Logger: zerolog.Nop().With().Str("k", "v").Logger(),
		OSSAddr: "o:1", STSAddr: "s:2", MQTTAddr: "m:3", HTTPAddr: "h:4",
	}
	ov := reflect.ValueOf(o)
	in := reflect.ValueOf(o.inproc())
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		if ov.Field(i).IsZero() {
			t.Fatalf("the test leaves Options.%s zero", f.Name)
		}
		got := in.FieldByName(f.Name)
		switch {
		case !got.IsValid():
			t.Errorf("the stack's options have no field %s", f.Name)
		case f.Type.Kind() == reflect.Func:
			if got.Pointer() != ov.Field(i).Pointer() {
				t.Errorf("Options.%s is not passed on", f.Name)
			}
		case !reflect.DeepEqual(got.Interface(), ov.Field(i).Interface()):
			t.Errorf("Options.%s = %v, the stack got %v", f.Name, ov.Field(i), got)
		}
	}
}

// TestConstants: the defaults named here are the stack's.
func TestConstants(t *testing.T) {
	t.Parallel()
	if DefaultBucket != inproc.DefaultBucket || DefaultPrefix != inproc.DefaultPrefix || RoleName != inproc.RoleName ||
		LogEnv != inproc.LogEnv || ErrClosed.Error() != inproc.ErrClosed.Error() {
		t.Error("clipgatetest's constants differ from internal/inproc's")
	}
	if public(inproc.ErrClosed) != ErrClosed || public(nil) != nil {
		t.Error("the engine's ErrClosed is not translated")
	}
}
