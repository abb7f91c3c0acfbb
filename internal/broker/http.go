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
		mux.HandleFunc("POST /emqx/authn", b.emqxAuthn)
		mux.HandleFunc("POST /emqx/authz", b.emqxAuthz)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
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

// emqxRequest decodes an EMQX request after checking the bearer token. On failure it
// has written the response (EMQX treats any status but 200 and 204 as "ignore").
func (b *Broker) emqxRequest(w http.ResponseWriter, r *http.Request, v any) bool {
	if b.emqxToken != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(b.emqxToken)) != 1 {
			httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHTTPBody))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			httpError(w, http.StatusBadRequest, "request body is not the expected JSON object: "+err.Error())
		}
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		httpError(w, http.StatusBadRequest, "trailing data after the JSON object")
		return false
	}
	return true
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

func (b *Broker) emqxAuthn(w http.ResponseWriter, r *http.Request) {
	var req emqxAuthnRequest
	if !b.emqxRequest(w, r, &req) {
		return
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
		return
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

func (b *Broker) emqxAuthz(w http.ResponseWriter, r *http.Request) {
	var req emqxAuthzRequest
	if !b.emqxRequest(w, r, &req) {
		return
	}
	var action topics.Action
	switch req.Action {
	case "publish":
		action = topics.Publish
	case "subscribe":
		action = topics.Subscribe
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("action %q: want publish or subscribe", req.Action))
		return
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
			return
		}
		role = rl
	}
	ok := b.scheme.Allowed(role, deviceID, req.Topic, action) && !(role == topics.RoleDevice && b.revs.Revoked(deviceID)) &&
		!(action == topics.Publish && bool(req.Retain) && !b.scheme.MayRetain(role, deviceID, req.Topic))
	if !ok {
		b.stats.aclDenied.Add(1)
		writeJSON(w, http.StatusOK, map[string]string{"result": "deny"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": "allow"})
}
