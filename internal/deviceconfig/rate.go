package deviceconfig

import (
	"fmt"
	"strings"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/bytesize"
)

// RateProfile is an upload rate for a daily window, written "HH:MM-HH:MM=RATE" with the
// rate in bytes per second as a size: "22:00-06:00=4MiB", or "=0" for no cap.
type RateProfile devicekit.RateProfile

// ParseRateProfile reads "HH:MM-HH:MM=RATE".
func ParseRateProfile(s string) (RateProfile, error) {
	win, rate, ok := strings.Cut(s, "=")
	if !ok {
		return RateProfile{}, fmt.Errorf("%q: want HH:MM-HH:MM=RATE, e.g. 22:00-06:00=4MiB (bytes per second; 0 for no cap)", s)
	}
	w, err := devicekit.ParseWindow(win)
	if err != nil {
		return RateProfile{}, err
	}
	r, err := bytesize.Parse(rate)
	if err != nil {
		return RateProfile{}, fmt.Errorf("rate of %s: %w", w, err)
	}
	return RateProfile{Window: w, Rate: int64(r)}, nil
}

// UnmarshalText reads a profile with ParseRateProfile (flags, configuration files).
func (p *RateProfile) UnmarshalText(b []byte) error {
	v, err := ParseRateProfile(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText writes "HH:MM-HH:MM=RATE" with the rate in bytes.
func (p RateProfile) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "%s=%d", p.Window, p.Rate), nil
}

// kitProfiles converts the profiles for devicekit.Config.
func kitProfiles(ps []RateProfile) []devicekit.RateProfile {
	var out []devicekit.RateProfile
	for _, p := range ps {
		out = append(out, devicekit.RateProfile(p))
	}
	return out
}
