package deviceid

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		id string
		ok bool
	}{
		{"cam-01", true},
		{"ab", true},
		{"a.b_c-D9", true},
		{strings.Repeat("x", 64), true},
		{"a", false},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"..", false},
		{"cam/01", false},
		{"cam+", false},
		{"cam#", false},
		{"cam*", false},
		{"cam 1", false},
		{"cam\x00", false},
		{"caméra", false},
		{"$SYS", false},
	}
	for _, c := range cases {
		err := Validate(c.id)
		if (err == nil) != c.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", c.id, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) error %v does not wrap ErrInvalid", c.id, err)
		}
		if Valid(c.id) != c.ok {
			t.Errorf("Valid(%q) = %v, want %v", c.id, !c.ok, c.ok)
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("cam-01")
	f.Add("..")
	f.Add("a/b")
	f.Fuzz(func(t *testing.T, id string) {
		if (Validate(id) == nil) != Valid(id) {
			t.Fatalf("Validate and Valid disagree on %q", id)
		}
	})
}

func TestValidatePortable(t *testing.T) {
	t.Parallel()
	for id, ok := range map[string]bool{"cam-01": true, "cam_01": true, "cam.01": false, ".x": false, "x": false, "cam/1": false} {
		err := ValidatePortable(id)
		if (err == nil) != ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePortable(%q) = %v, want ok %v", id, err, ok)
		}
	}
	if err := ValidatePortable("cam.01"); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Errorf("the error does not say why a '.' is refused: %v", err)
	}
}
