package mqttclient

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Schemes lists the broker URL schemes a Client accepts; ssl, tls, mqtts and wss use TLS.
const Schemes = "tcp, mqtt, ssl, tls, mqtts, ws, wss"

// URLError is a broker URL that cannot work. Its message names the setting it came from:
// `BrokerURL "http://h:1": scheme "http" is not one of tcp, ...`.
type URLError struct {
	// Field is the setting's name as its user knows it (a Config field, a flag, a key).
	Field string
	// Err says what is wrong, quoting the URL.
	Err error
}

func (e *URLError) Error() string { return e.Field + " " + e.Err.Error() }

// Unwrap returns what is wrong, without the field's name.
func (e *URLError) Unwrap() error { return e.Err }

// CheckURL checks a broker URL given as setting field: scheme://host:port with one of
// Schemes, a port for the TCP schemes (ws and wss default to 80 and 443 and may have a
// path), and no credentials, query or fragment, which paho would otherwise use or drop
// silently. The error is a *URLError naming field.
func CheckURL(field, s string) error {
	bad := func(format string, args ...any) error {
		return &URLError{Field: field, Err: fmt.Errorf("%q"+format, append([]any{s}, args...)...)}
	}
	if s == "" {
		return &URLError{Field: field, Err: errors.New("is required")}
	}
	if !strings.Contains(s, "://") {
		return bad(": want scheme://host:port with scheme %s", Schemes)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL
		}
		return bad(": %v", err)
	}
	web := false
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	case "ws", "wss":
		web = true
	default:
		return bad(": scheme %q is not one of %s", u.Scheme, Schemes)
	}
	switch {
	case u.User != nil:
		return bad(": holds credentials; give them in their own settings")
	case u.Hostname() == "":
		return bad(" has no host")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		if !web {
			return bad(": a query or fragment means nothing to %s", u.Scheme)
		}
	case !web && u.Path != "" && u.Path != "/":
		return bad(": a path means nothing to %s", u.Scheme)
	}
	port := u.Port()
	if port == "" {
		if web {
			return nil
		}
		return bad(" has no port (MQTT's are 1883, and 8883 with TLS)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad(": port %s is not 1 to 65535", port)
	}
	return nil
}

// UsesTLS reports whether a broker URL's scheme is one of TLS: ssl, tls, mqtts or wss.
func UsesTLS(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "wss":
		return true
	}
	return false
}
