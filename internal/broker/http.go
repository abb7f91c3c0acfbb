package broker

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/topics"
)

// maxHTTPBody bounds the EMQX request bodies.
const maxHTTPBody = 16 << 10

// httpHandler serves:
//
//	GET  /healthcheck  200 {"status":"ok"} while the broker runs
//	GET  /sys          Stats as JSON (mochi's $SYS figures, drop counters, clipgate's counters)
//	POST /emqx/authn   EMQX 5 HTTP authentication (when Config.EMQX.Enabled)
//	POST /emqx/authz   EMQX 5 HTTP authorization (when Config.EMQX.Enabled)
func (b *Broker) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthcheck", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /sys", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, b.Stats())
	})
	if b.cfg.EMQX.Enabled {
		// Any method: a wrong one is answered with a denial too (see emqxDecide).
		mux.Handle("/emqx/authn", b.emqxDecide("authn", b.emqxAuthn))
		mux.Handle("/emqx/authz", b.emqxDecide("authz", b.emqxAuthz))
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok, err := checkToken(strings.TrimSpace(string(data)))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return tok, nil
}

// checkToken refuses a bearer token too short to be secret.
func checkToken(tok string) (string, error) {
	if len(tok) < 16 {
		return "", errors.New("token shorter than 16 characters")
	}
	return tok, nil
}

// emqxDeny is the only answer to a request that is not a well-formed, authenticated
// decision request. EMQX 5 treats any status but 200 and 204, and a 200 without a
// result of allow or deny, as "ignore", and an ignored request falls through to the next
// source or to no_match (allow by default)
// (https://docs.emqx.com/en/emqx/latest/access-control/authz/http.html). So every
// failure is a 200 {"result":"deny"}: a wrong token, garbage, an oversized body, a wrong
// method, an unknown action, even a panic in the handler.
var emqxDeny = []byte(`{"result":"deny"}` + "\n")

// emqxDecide wraps an EMQX endpoint: it refuses wrong methods and bad bearer tokens,
// and turns a panic into a denial, all with emqxDeny and a log line naming the reason.
func (b *Broker) emqxDecide(kind string, h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	deny := func(w http.ResponseWriter, r *http.Request, why string) {
		b.stats.authFailures.Add(1)
		b.log.Warn().Str("endpoint", kind).Str("remote", r.RemoteAddr).Str("reason", why).Msg("emqx request denied")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(emqxDeny)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &decisionWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if !rw.wrote {
					deny(w, r, fmt.Sprintf("internal error: %v", v))
				}
				b.log.Error().Str("endpoint", kind).Interface("panic", v).Msg("emqx handler panicked")
			}
		}()
		if r.Method != http.MethodPost {
			deny(w, r, "method "+r.Method+" (want POST)")
			return
		}
		if b.emqxToken != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(b.emqxToken)) != 1 {
				deny(w, r, "missing or wrong bearer token")
				return
			}
		}
		if err := h(rw, r); err != nil {
			deny(w, r, err.Error())
		}
	})
}

// decisionWriter records whether a handler has started its answer.
type decisionWriter struct {
	http.ResponseWriter
	wrote bool
}

func (d *decisionWriter) WriteHeader(code int) {
	d.wrote = true
	d.ResponseWriter.WriteHeader(code)
}

func (d *decisionWriter) Write(p []byte) (int, error) {
	d.wrote = true
	return d.ResponseWriter.Write(p)
}

// emqxRequest decodes one JSON object of at most maxHTTPBody bytes into v.
func emqxRequest(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHTTPBody))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("request body larger than %d bytes", maxHTTPBody)
		}
		return fmt.Errorf("request body is not the expected JSON object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// emqxAuthnRequest is the body of an EMQX HTTP authentication request, with the
// template {"clientid":"${clientid}","username":"${username}","password":"${password}",
// "cert_common_name":"${cert_common_name}"} (other fields are ignored). A non-empty
// cert_common_name must come from a certificate EMQX verified.
type emqxAuthnRequest struct {
	ClientID       string `json:"clientid"`
	Username       string `json:"username"`
	Password       string `json:"password"`
	CertCommonName string `json:"cert_common_name"`
}

// Client attributes returned on successful EMQX authentication, for the authz template
// ({"role":"${client_attrs.clipgate_role}","sig":"${client_attrs.clipgate_sig}", ...}).
const (
	attrRole = "clipgate_role"
	attrSig  = "clipgate_sig"
)

type emqxAuthnResponse struct {
	Result      string            `json:"result"`
	IsSuperuser bool              `json:"is_superuser"`
	ClientAttrs map[string]string `json:"client_attrs,omitempty"`
}

func (b *Broker) emqxAuthn(w http.ResponseWriter, r *http.Request) error {
	var req emqxAuthnRequest
	if err := emqxRequest(w, r, &req); err != nil {
		return err
	}
	in := login{
		clientID: req.ClientID,
		username: req.Username,
		password: req.Password,
		certCN:   req.CertCommonName,
		hasCert:  req.CertCommonName != "",
	}
	p, refused, why := b.decideLogin(&in)
	if refused != refuseNone {
		b.stats.authFailures.Add(1)
		b.met.refused(refused)
		b.log.Info().Str("client", req.ClientID).Str("refusal", refused.String()).Str("reason", why).Msg("emqx authn denied")
		writeJSON(w, http.StatusOK, emqxAuthnResponse{Result: "deny"})
		return nil
	}
	b.met.accepted(p.Role)
	role := p.Role.String()
	writeJSON(w, http.StatusOK, emqxAuthnResponse{
		Result: "allow",
		ClientAttrs: map[string]string{
			attrRole: role,
			attrSig:  b.attrSig(req.Username, role),
		},
	})
	return nil
}

// attrSig binds a service role to a username, so that the authz endpoint can trust the
// role EMQX hands back: HMAC-SHA256 under a key derived from the connect keys.
func (b *Broker) attrSig(username, role string) string {
	return identity.Sign(b.attrKey, []byte("clipgate-emqx-attrs-v1\x00"+username+"\x00"+role))
}

// emqxAuthzRequest is the body of an EMQX HTTP authorization request, with the template
// {"clientid":"${clientid}","username":"${username}","topic":"${topic}",
// "action":"${action}","retain":"${retain}","role":"${client_attrs.clipgate_role}",
// "sig":"${client_attrs.clipgate_sig}"} (retain: EMQX 5.1.1 and later). Devices (client ID = username = a device ID)
// need no role; services need the attributes their authentication returned.
type emqxAuthzRequest struct {
	ClientID string   `json:"clientid"`
	Username string   `json:"username"`
	Topic    string   `json:"topic"`
	Action   string   `json:"action"`
	Retain   jsonBool `json:"retain"` // limits.go
	Role     string   `json:"role"`
	Sig      string   `json:"sig"`
}

func (b *Broker) emqxAuthz(w http.ResponseWriter, r *http.Request) error {
	var req emqxAuthzRequest
	if err := emqxRequest(w, r, &req); err != nil {
		return err
	}
	var action topics.Action
	switch req.Action {
	case "publish":
		action = topics.Publish
	case "subscribe":
		action = topics.Subscribe
	default:
		return fmt.Errorf("action %q: want publish or subscribe", req.Action)
	}
	var role topics.Role
	var deviceID string
	switch {
	case deviceid.Valid(req.ClientID) && req.ClientID == req.Username && (req.Role == "" || req.Role == topics.RoleDevice.String()):
		role, deviceID = topics.RoleDevice, req.ClientID
	default:
		rl, err := topics.ParseRole(req.Role)
		if err != nil || rl == topics.RoleDevice || !identity.Verify(b.attrKey, []byte("clipgate-emqx-attrs-v1\x00"+req.Username+"\x00"+req.Role), req.Sig) {
			b.log.Info().Str("client", req.ClientID).Msg("emqx authz: no verifiable role")
			writeJSON(w, http.StatusOK, map[string]string{"result": "deny"})
			return nil
		}
		role = rl
	}
	ok := b.scheme.Allowed(role, deviceID, req.Topic, action) && !(role == topics.RoleDevice && b.revs.Revoked(deviceID)) &&
		!(action == topics.Publish && bool(req.Retain) && !b.scheme.MayRetain(role, deviceID, req.Topic))
	if !ok {
		b.stats.aclDenied.Add(1)
		writeJSON(w, http.StatusOK, map[string]string{"result": "deny"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": "allow"})
	return nil
}
