package deviceconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
)

func TestRateProfilesWriteAndParse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "device.yaml")
	night := devicekit.Window{From: 22 * time.Hour, To: 6 * time.Hour}
	f := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-1", UploadRate: 1 << 20,
		UploadRateAt: []RateProfile{{Window: night, Rate: 0}, {Window: devicekit.Window{From: 0, To: 24 * time.Hour}, Rate: 4096}}}
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "upload-rate: 1048576\n") || !strings.Contains(string(text), "- 22:00-06:00=0\n") || !strings.Contains(string(text), "- 00:00-24:00=4096\n") {
		t.Errorf("written file:\n%s", text)
	}
	for _, s := range []string{"22:00-06:00=0", "00:00-24:00=4096"} {
		p, err := ParseRateProfile(s)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := p.MarshalText(); string(b) != s {
			t.Errorf("%q reads back as %q", s, b)
		}
	}
	for _, bad := range []File{
		{UploadRate: 10},
		{UploadRateAt: []RateProfile{{Window: night, Rate: 10}}},
		{UploadRateAt: []RateProfile{{Window: night, Rate: -5}}},
		{UploadRateAt: []RateProfile{{Window: devicekit.Window{From: time.Hour, To: time.Hour}, Rate: 0}}},
	} {
		var fe *FieldError
		if err := Write(path, bad); !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "upload-rate") {
			t.Errorf("Write(%+v) = %v, want an upload-rate field error", bad, err)
		}
	}
	for _, bad := range []string{"", "=", "22:00-06:00", "22:00-06:00=", "x=1MiB", "22:00-06:00=1.5"} {
		if _, err := ParseRateProfile(bad); err == nil {
			t.Errorf("ParseRateProfile(%q) succeeded", bad)
		}
	}
}
