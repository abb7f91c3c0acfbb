package localcloud

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

const (
	stsVersion = "2015-04-01"
	// stsTimestampWindow is how far a request's Timestamp may be from the server clock;
	// nonces are remembered for as long as their request could be accepted.
	stsTimestampWindow = 15 * time.Minute
	// stsMaxBody bounds the form body (a 2048-character policy, percent-encoded, fits).
	stsMaxBody = 32 << 10
	// stsMaxNonces bounds the replay memory. Beyond it, requests are refused with
	// ServiceUnavailable rather than accepted without replay protection.
	stsMaxNonces = 1 << 18
)

// stsService answers STS AssumeRole and GetCallerIdentity requests signed with the RPC
// (HMAC-SHA1) signature, with a long-term key or with STS credentials (SecurityToken).
type stsService struct {
	auth    *Authority
	now     func() time.Time
	log     zerolog.Logger
	limiter *rate.Limiter // nil: unlimited
	nonces  nonceCache
	metrics *cloudMetrics
}

// newSTS returns the STS handler. cfg must have its defaults applied.
func newSTS(cfg *Config, auth *Authority) *stsService {
	s := &stsService{auth: auth, now: cfg.Now, log: cfg.Logger, nonces: nonceCache{seen: map[string]time.Time{}, max: stsMaxNonces}, metrics: cfg.metrics}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.STSRate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.STSRate), max(1, int(cfg.STSRate)))
	}
	return s
}

type stsAssumedRoleUser struct {
	Arn           string `json:"Arn"`
	AssumedRoleID string `json:"AssumedRoleId"`
}

type stsCredentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	AccessKeySecret string `json:"AccessKeySecret"`
	SecurityToken   string `json:"SecurityToken"`
	Expiration      string `json:"Expiration"`
}

type stsAssumeRoleResponse struct {
	RequestID       string             `json:"RequestId"`
	AssumedRoleUser stsAssumedRoleUser `json:"AssumedRoleUser"`
	Credentials     stsCredentials     `json:"Credentials"`
}

type stsErrorResponse struct {
	RequestID string `json:"RequestId"`
	HostID    string `json:"HostId"`
	Code      string `json:"Code"`
	Message   string `json:"Message"`
	Recommend string `json:"Recommend"`
}

func (s *stsService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := strings.ToUpper(uuid.NewString())
	action := ""
	var (
		status int
		code   string
	)
	defer func() {
		ev := s.log.Info()
		if status >= 500 {
			ev = s.log.Error()
		}
		ev = ev.Str("service", "sts").Str("method", r.Method).Str("action", action).
			Int("status", status).Dur("duration", time.Since(start)).Str("request_id", reqID)
		if code != "" {
			ev = ev.Str("code", code)
		}
		ev.Msg("sts request")
	}()

	resp, err := s.handle(w, r, reqID, &action)
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("x-acs-request-id", reqID)
	var body any
	if err != nil {
		status, code = err.Status, err.Code
		body = &stsErrorResponse{
			RequestID: reqID,
			HostID:    r.Host,
			Code:      err.Code,
			Message:   err.Message,
			Recommend: "https://api.aliyun.com/troubleshoot?q=" + url.QueryEscape(err.Code) + "&product=Sts",
		}
	} else {
		status = http.StatusOK
		body = resp
	}
	out, merr := json.Marshal(body)
	if merr != nil { // cannot happen for these types
		status = http.StatusInternalServerError
		out = []byte(`{"Code":"InternalError"}`)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	n, _ := w.Write(out)
	s.metrics.observe("sts", stsOperation(action), status, r.ContentLength, int64(n))
}

// handle checks and answers one request. The checks run in the order STS applies them:
// the request shape, then the API, then the caller's credentials and signature, then the
// replay and rate limits, and only then the action's own parameters.
func (s *stsService) handle(w http.ResponseWriter, r *http.Request, reqID string, action *string) (any, *Error) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return nil, stsError(http.StatusMethodNotAllowed, "UnsupportedHTTPMethod", "Specified HTTP method "+strconv.Quote(r.Method)+" is not supported; use POST or GET.")
	}
	if r.URL.Path != "/" {
		return nil, stsError(http.StatusNotFound, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, stsMaxBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, stsError(http.StatusRequestEntityTooLarge, "InvalidParameter", "The request body is larger than "+strconv.Itoa(stsMaxBody)+" bytes.")
		}
		return nil, stsError(http.StatusBadRequest, "InvalidParameter", "The query string or form body is malformed: "+err.Error())
	}
	params := make(map[string]string, len(r.Form))
	for k, vs := range r.Form {
		if len(vs) != 1 {
			return nil, stsError(http.StatusBadRequest, "InvalidParameter", "The parameter "+strconv.Quote(k)+" is given more than once.")
		}
		params[k] = vs[0]
	}
	*action = params["Action"]
	for _, name := range []string{"Action", "Version", "AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"} {
		if params[name] == "" {
			return nil, errMissing(name)
		}
	}
	if params["Version"] != stsVersion {
		return nil, stsError(http.StatusBadRequest, "InvalidVersion", "Specified parameter Version is not valid.")
	}
	if params["Action"] != "AssumeRole" && params["Action"] != "GetCallerIdentity" {
		return nil, stsError(http.StatusNotFound, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
	}
	if f := params["Format"]; f != "" && !strings.EqualFold(f, "JSON") {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.Format", "The local STS answers only Format=JSON.")
	}
	if params["SignatureMethod"] != "HMAC-SHA1" {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.SignatureMethod", "Specified signature method is not supported; use HMAC-SHA1.")
	}
	if params["SignatureVersion"] != "1.0" {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.SignatureVersion", "Specified signature version is not supported; use 1.0.")
	}
	if t := params["SignatureType"]; t != "" {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.SignatureType", "Specified signature type is not supported.")
	}
	ts, ok := parseRPCTimestamp(params["Timestamp"])
	if !ok {
		return nil, stsError(http.StatusBadRequest, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
	}
	now := s.now()
	if d := now.Sub(ts); d > stsTimestampWindow || d < -stsTimestampWindow {
		return nil, stsError(http.StatusBadRequest, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
	}
	akid := params["AccessKeyId"]
	caller, cerr := s.auth.resolveRPC(akid, params["SecurityToken"], now)
	if cerr != nil {
		return nil, cerr
	}
	sts := rpcStringToSign(r.Method, params)
	want := rpcSignature(caller.Secret, sts)
	if subtle.ConstantTimeCompare([]byte(want), []byte(params["Signature"])) != 1 {
		return nil, stsError(http.StatusBadRequest, "SignatureDoesNotMatch",
			"Specified signature is not matched with our calculation. server string to sign is:"+sts)
	}
	if err := s.nonces.use(akid+"\n"+params["SignatureNonce"], ts.Add(stsTimestampWindow), now); err != nil {
		return nil, err
	}
	if s.limiter != nil && !s.limiter.AllowN(now, 1) {
		return nil, stsError(http.StatusBadRequest, "Throttling.User", "Request was denied due to user flow control.")
	}
	if params["Action"] == "GetCallerIdentity" {
		return s.auth.callerIdentity(caller, reqID), nil
	}
	return s.assumeRole(caller, params, now, reqID)
}

// assumeRole answers AssumeRole for the authenticated caller.
func (s *stsService) assumeRole(caller *Principal, params map[string]string, now time.Time, reqID string) (*stsAssumeRoleResponse, *Error) {
	var dur time.Duration
	if v := params["DurationSeconds"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, stsError(http.StatusBadRequest, "InvalidParameter.DurationSeconds", "The parameter DurationSeconds must be a whole number of seconds.")
		}
		// Out-of-range values go on to AssumeRole, which names the role's own maximum; 0
		// and below must not read as "not given".
		if n <= 0 {
			n = -1
		}
		dur = time.Duration(min(n, 1<<31)) * time.Second
	}
	if ext, ok := params["ExternalId"]; ok && !validExternalID(ext) {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.ExternalId", "The parameter ExternalId is wrongly formed.")
	}
	cr, err := s.auth.assumeRole(caller, params["RoleArn"], params["RoleSessionName"], params["Policy"], dur, now)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, stsError(http.StatusInternalServerError, "InternalError", "STS Server Internal Error happened.")
	}
	return &stsAssumeRoleResponse{
		RequestID: reqID,
		AssumedRoleUser: stsAssumedRoleUser{
			Arn:           cr.RoleARN + "/" + cr.SessionName,
			AssumedRoleID: s.auth.assumedRoleID(cr.RoleARN, cr.SessionName),
		},
		Credentials: stsCredentials{
			AccessKeyID:     cr.AccessKeyID,
			AccessKeySecret: cr.AccessKeySecret,
			SecurityToken:   cr.SecurityToken,
			Expiration:      cr.Expiration.UTC().Format("2006-01-02T15:04:05Z"),
		},
	}, nil
}

// parseRPCTimestamp accepts UTC ISO 8601 with or without fractional seconds
// ("2006-01-02T15:04:05Z", "2006-01-02T15:04:05.000Z").
func parseRPCTimestamp(s string) (time.Time, bool) {
	if !strings.HasSuffix(s, "Z") {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999999Z", s)
	return t, err == nil
}

// rpcStringToSign is METHOD&%2F&pct(k1=v1&k2=v2...) over all parameters but Signature,
// sorted by key, with Alibaba's percent-encoding.
func rpcStringToSign(method string, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(rpcEscape(k))
		b.WriteByte('=')
		b.WriteString(rpcEscape(params[k]))
	}
	return method + "&%2F&" + rpcEscape(b.String())
}

// rpcSignature is base64(HMAC-SHA1(secret+"&", stringToSign)).
func rpcSignature(secret, stringToSign string) string {
	m := hmac.New(sha1.New, []byte(secret+"&"))
	m.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// rpcEscape is RFC 3986 percent-encoding as Alibaba's RPC signature uses it: QueryEscape
// with space as %20, '*' as %2A and '~' kept.
func rpcEscape(s string) string {
	e := url.QueryEscape(s)
	if strings.ContainsAny(e, "+*%") {
		e = strings.ReplaceAll(e, "+", "%20")
		e = strings.ReplaceAll(e, "*", "%2A")
		e = strings.ReplaceAll(e, "%7E", "~")
	}
	return e
}

// validExternalID applies STS's rule: 2 to 1224 of [A-Za-z0-9_+=,.@:/-].
func validExternalID(s string) bool {
	if len(s) < 2 || len(s) > 1224 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !strings.ContainsRune("_+=,.@:/-", rune(s[i])) {
			return false
		}
	}
	return true
}

func errMissing(name string) *Error {
	return stsError(http.StatusBadRequest, "MissingParameter",
		`The input parameter "`+name+`" that is mandatory for processing this request is not supplied.`)
}

// nonceCache remembers signature nonces until their request's timestamp leaves the
// window, so a replay is refused and memory stays bounded.
type nonceCache struct {
	mu        sync.Mutex
	seen      map[string]time.Time // nonce -> forget after
	max       int
	nextSweep time.Time
}

func (c *nonceCache) use(nonce string, until, now time.Time) *Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[nonce]; ok && now.Before(exp) {
		return stsError(http.StatusBadRequest, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	if now.After(c.nextSweep) || len(c.seen) >= c.max {
		for k, exp := range c.seen {
			if !now.Before(exp) {
				delete(c.seen, k)
			}
		}
		c.nextSweep = now.Add(time.Minute)
	}
	if len(c.seen) >= c.max {
		return stsError(http.StatusServiceUnavailable, "ServiceUnavailable", "The request has failed due to a temporary failure of the server: too many requests within the timestamp window.")
	}
	c.seen[nonce] = until
	return nil
}
