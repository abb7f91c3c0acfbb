// Package tokenworker answers device auth requests: it checks who is asking (topic, strict
// decoding, revocation, signature, clock, nonce, rate, and for writes the upload quota of
// Config.Quota), builds the device's least-privilege session policy, calls STS AssumeRole
// (RoleSessionName = device ID) or reuses the device's still-valid credentials, and
// replies on the device's own reply topic, with the credentials sealed to the device's
// request key (or its certificate) by default.
//
// Handle is the transport-free core. Start subscribes an MQTT client to the shared worker
// group, so that any number of workers, in one process or many, share the requests; a
// bounded pool handles them, waiting a bounded time for an STS slot or for the STS rate;
// a full queue, or a request that cannot be served in that time, is answered busy, never
// queued without bound.
//
// Error codes: every failure is one code of protocol's closed set. STS failures map as
// follows: throttling, 5xx, timeouts and network errors are unavailable (retry soon); errors
// of the worker's own configuration (unknown role, NoPermission, bad access key, a policy
// STS refuses) are internal with a long retry hint, because the device cannot fix them and
// must recover once an operator has; InvalidParameter.RoleSessionName (STS refuses this device
// ID) is denied.
package tokenworker

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/quota"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Worker is one token worker. Handle is safe for concurrent use.
type Worker struct {
	cfg      Config
	log      zerolog.Logger
	sts      *stsPool
	stsLimit *rate.Limiter
	devLimit *deviceLimiter
	creds    *credCache
	busy     busySchedule // retryAfterMs of busy replies (busy.go)
	unhook   func()       // unregisters the cache's revocation callback
	ctr      counters
	stsWG    sync.WaitGroup // AssumeRole calls that outlive their Handle (cancelled context)

	// MQTT side, set by Start.
	mu      sync.Mutex
	started bool
	closed  bool
	client  Transport
	queue   chan job
	runCtx  context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// poolSize is the number of handler goroutines: twice the STS slots, so that cheap
	// requests (cached credentials, refusals) are served while STS calls are pending.
	poolSize int
}

// New checks cfg and returns a worker. It does not connect; see Start.
func New(cfg Config) (*Worker, error) {
	c := cfg
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.RevocationsKey != nil {
		if len(c.RevocationsKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("tokenworker: RevocationsKey is %d bytes, want %d", len(c.RevocationsKey), ed25519.PublicKeySize)
		}
		if c.Revocations == nil {
			c.Revocations = identity.NewRevocations()
		}
	}
	if c.QuotasKey != nil {
		if len(c.QuotasKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("tokenworker: QuotasKey is %d bytes, want %d", len(c.QuotasKey), ed25519.PublicKeySize)
		}
		if c.Quotas == nil {
			c.Quotas = new(quota.Table)
		}
		if c.Quota == nil {
			c.Quota = c.Quotas.ResetAt
		}
	}
	w := &Worker{
		cfg:      c,
		log:      c.Logger.With().Str("component", "tokenworker").Str("worker", c.ClientID).Logger(),
		sts:      newSTSPool(c.STS, c.MaxConcurrent),
		stsLimit: rate.NewLimiter(c.STSRate, c.STSBurst),
		devLimit: newDeviceLimiter(float64(c.DeviceRate), c.DeviceBurst, c.CacheSize),
		creds:    newCredCache(c.CacheSize),
		poolSize: 2 * c.MaxConcurrent,
	}
	// Credentials issued before a revocation are never handed out again, even after a
	// restore (the device may not ask while it is revoked, which would drop them too).
	w.unhook = func() {}
	if c.Revocations != nil {
		w.unhook = c.Revocations.OnRevoke(w.creds.forgetAll)
	}
	if c.Metrics != nil {
		c.Metrics.add(w)
	}
	return w, nil
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() Stats { return w.ctr.snapshot() }

// Retry hints for refusals that are not about STS.
const (
	retryBusy      = time.Second
	retryReplayCap = time.Second
	retryShutdown  = time.Second
)

// decision is what one request came to, for the reply, the audit line and the counters.
type decision struct {
	device, id string
	code       protocol.Code // "" for success
	message    string
	retryAfter time.Duration
	cached     bool
	sealed     bool
	rekeyed    bool                 // the reply carries the device's keys under the current fleet key
	creds      protocol.Credentials // on success
	start      time.Time
}

// Handle is the transport-free core: it decodes and checks one request received on topic,
// issues or reuses credentials, and returns the reply and its topic. ok is false, and nothing
// must be sent, when topic is not a device auth-request topic or the payload is too garbled
// to carry a request ID; both are logged. ctx bounds the wait for STS (an abandoned call
// completes in the background and its credentials are cached).
func (w *Worker) Handle(ctx context.Context, topic string, payload []byte) (replyTopic string, reply []byte, ok bool) {
	return w.handle(ctx, topic, payload, time.Time{})
}

// handle is Handle with a wait budget: until wait (real time; zero: none), a request that finds every
// STS slot taken waits for one, and one the STS rate cannot serve at once waits for its
// turn, instead of being answered busy. The MQTT pool gives each request a budget counted
// from its arrival, so that busy means the worker really cannot serve it in time.
func (w *Worker) handle(ctx context.Context, topic string, payload []byte, wait time.Time) (replyTopic string, reply []byte, ok bool) {
	w.ctr.requests.Add(1)
	d := decision{start: time.Now()}
	kind, device, ok := w.cfg.Topics.Parse(topic)
	if !ok || kind != topics.KindAuthRequest {
		w.drop(topic, len(payload), "not a device auth-request topic")
		return "", nil, false
	}
	d.device = device
	now := w.cfg.Now()
	req, key := w.check(ctx, &d, payload, now, wait)
	if d.id == "" {
		w.drop(topic, len(payload), d.message)
		return "", nil, false
	}
	var err error
	if d.code == "" {
		reply, err = w.success(&d, key, req, now)
		if err != nil {
			w.log.Error().Err(err).Str("device", device).Str("id", d.id).Msg("cannot build reply")
			d = decision{device: device, id: d.id, start: d.start, code: protocol.CodeInternal,
				message: "the token worker cannot build the reply", retryAfter: retryUnavailable}
		}
	}
	if d.code != "" {
		reply = w.failure(&d, now)
	}
	w.audit(&d)
	return w.cfg.Topics.AuthReply(device), reply, true
}

// check runs every check in order and, when all pass, obtains credentials. On return d.id is
// the request ID ("" when unknown), d.code is "" on success, and then req and the device key
// are set and d carries the credentials.
func (w *Worker) check(ctx context.Context, d *decision, payload []byte, now, wait time.Time) (*protocol.AuthRequest, deviceKey) {
	var key deviceKey
	if len(payload) > protocol.MaxAuthRequestSize {
		d.id, _ = salvage(payload)
		d.fail(protocol.CodeInvalid, 0, fmt.Sprintf("request is %d bytes; the limit is %d", len(payload), protocol.MaxAuthRequestSize))
		return nil, key
	}
	req, err := protocol.DecodeAuthRequest(payload)
	if err != nil {
		id, dev := salvage(payload)
		d.id = id
		if id != "" && dev != "" && dev != d.device {
			d.fail(protocol.CodeInvalid, 0, "the request's device does not match its topic")
		} else {
			d.fail(protocol.CodeInvalid, 0, "malformed request: "+errorMessage(err))
		}
		if id == "" {
			d.message = "undecodable request without a usable ID: " + errorMessage(err)
		}
		return nil, key
	}
	d.id = req.ID
	if req.Device != d.device {
		d.fail(protocol.CodeInvalid, 0, "the request's device does not match its topic")
		return nil, key
	}
	if w.cfg.Revocations != nil && w.cfg.Revocations.Revoked(d.device) {
		w.creds.forget(d.device)
		d.fail(protocol.CodeRevoked, 0, "this device is revoked")
		return nil, key
	}
	var ok bool
	if key, ok = w.authenticate(d, req, now); !ok {
		return nil, key
	}
	// Only a signed request learns the server time, so the clock cannot be probed.
	ts := req.Time()
	if skew := now.Sub(ts); skew > w.cfg.ClockWindow || skew < -w.cfg.ClockWindow {
		d.fail(protocol.CodeClockSkew, 0, fmt.Sprintf("request time is %v off the server time (window ±%v); correct the clock with serverTime and sign again",
			skew.Round(time.Second), w.cfg.ClockWindow))
		return nil, key
	}
	if err := w.cfg.Replay.Check(d.device, req.Nonce, ts, now); err != nil {
		switch {
		case errors.Is(err, identity.ErrReplay):
			d.fail(protocol.CodeReplay, 0, "this nonce was already used; sign a new request")
		case errors.Is(err, identity.ErrReplayCacheFull):
			d.fail(protocol.CodeBusy, retryReplayCap, "the token worker is overloaded; retry later")
		case errors.Is(err, identity.ErrOutsideWindow): // a shared cache with a narrower window
			d.fail(protocol.CodeClockSkew, 0, "request time is outside the server's window; correct the clock with serverTime and sign again")
		default:
			d.fail(protocol.CodeInvalid, 0, "request rejected: "+errorMessage(err))
		}
		return nil, key
	}
	if ok, wait := w.devLimit.allow(d.device, now); !ok {
		d.fail(protocol.CodeRateLimited, wait, "too many requests from this device; retry after retryAfterMs")
		return nil, key
	}
	mode, err := clipgate.ParseMode(string(req.Mode))
	if err != nil {
		d.fail(protocol.CodeInvalid, 0, "malformed request: "+err.Error())
		return nil, key
	}
	if w.cfg.Quota != nil && (mode.Has(clipgate.ModeWrite) || mode.Has(clipgate.ModeAppend)) {
		if reset := w.cfg.Quota(d.device, now); reset.After(now) {
			wait := min(reset.Sub(now), time.Duration(protocol.MaxRetryAfterMs)*time.Millisecond)
			d.fail(protocol.CodeQuotaExceeded, wait, "this device used its upload quota until "+reset.UTC().Format(time.RFC3339)+"; keep the clips and retry after retryAfterMs")
			return nil, key
		}
	}
	ck := credKey{device: d.device, mode: string(req.Mode)}
	if w.cfg.ReuseMargin >= 0 {
		if cr, ok := w.creds.get(ck, now.Add(w.cfg.ReuseMargin)); ok {
			d.creds = cr
			d.cached = true
			return req, key
		}
	}
	cr, ok := w.issue(ctx, d, ck, mode, now, wait)
	if !ok {
		return nil, key
	}
	d.creds = *cr
	return req, key
}

// deviceKey is what a reply is sealed to: a device's request key, or the public key of its
// certificate.
type deviceKey struct {
	request []byte
	cert    crypto.PublicKey
}

// authenticate checks the request's signature: HMAC with the device's request key of the
// key ID the request names, or the signature of the certificate it carries, which must
// chain to the fleet CA and name the device.
func (w *Worker) authenticate(d *decision, req *protocol.AuthRequest, now time.Time) (deviceKey, bool) {
	if req.Cert != "" {
		der, err := base64.RawURLEncoding.DecodeString(req.Cert) // canonical: DecodeAuthRequest checked
		if err != nil {
			d.fail(protocol.CodeInvalid, 0, "malformed request: cert is not base64url")
			return deviceKey{}, false
		}
		pub, err := identity.VerifyDeviceCertificate(der, w.cfg.FleetCA, d.device, now)
		if err != nil {
			d.fail(protocol.CodeUnauthenticated, 0, err.Error())
			return deviceKey{}, false
		}
		sig, err := base64.RawURLEncoding.DecodeString(req.Sig)
		if err != nil || !identity.VerifyKeySignature(pub, req.SigningString(), sig) {
			d.fail(protocol.CodeUnauthenticated, 0, "the request signature does not verify with the certificate's key")
			return deviceKey{}, false
		}
		return deviceKey{cert: pub}, true
	}
	if w.cfg.FleetKeys == nil {
		d.fail(protocol.CodeUnauthenticated, 0, "this token worker holds no fleet keys: only devices with a certificate are served")
		return deviceKey{}, false
	}
	key, err := w.cfg.FleetKeys.RequestKey(req.KID, d.device, now)
	if err != nil {
		d.fail(protocol.CodeUnauthenticated, 0, "the request's key cannot be used: "+err.Error()+"; the device needs a new device key")
		return deviceKey{}, false
	}
	if !identity.Verify(key, req.SigningString(), req.Sig) {
		d.fail(protocol.CodeUnauthenticated, 0, "the request signature does not verify")
		return deviceKey{}, false
	}
	return deviceKey{request: key}, true
}

// issue calls STS under the worker's concurrency bound and rate limit, waiting for a slot
// and for the rate until wait (see handle).
func (w *Worker) issue(ctx context.Context, d *decision, ck credKey, mode clipgate.Mode, now, wait time.Time) (*protocol.Credentials, bool) {
	if ctx.Err() != nil {
		d.fail(protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
		return nil, false
	}
	client, ok, err := w.sts.tryAcquire()
	if err == nil && !ok && !wait.IsZero() {
		client, ok, err = w.acquireUntil(ctx, wait)
	}
	if err != nil {
		w.log.Error().Err(err).Msg("cannot create STS client")
		d.fail(protocol.CodeInternal, retryMisconfig, "the token worker is misconfigured; retry later")
		return nil, false
	}
	if !ok {
		if ctx.Err() != nil {
			d.fail(protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
			return nil, false
		}
		d.fail(protocol.CodeBusy, w.busyRetry(), "the token worker is at its limit of STS calls; retry after retryAfterMs")
		return nil, false
	}
	// The rate is reserved after the slot, with the slot's own time, so that a wait for the
	// slot is not counted twice.
	if !wait.IsZero() {
		now = w.cfg.Now()
	}
	if r := w.stsLimit.ReserveN(now, 1); !r.OK() {
		w.sts.release(client)
		d.fail(protocol.CodeBusy, w.busyRetry(), "the token worker's STS rate is exhausted; retry after retryAfterMs")
		return nil, false
	} else if delay := r.DelayFrom(now); delay > 0 {
		if wait.IsZero() || delay > time.Until(wait) || !sleepCtx(ctx, delay) {
			r.CancelAt(now)
			w.sts.release(client)
			if ctx.Err() != nil {
				d.fail(protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
				return nil, false
			}
			d.fail(protocol.CodeBusy, max(delay, w.busyRetry()), "the token worker's STS rate is exhausted; retry after retryAfterMs")
			return nil, false
		}
	}
	pol, err := policy.DevicePolicy(w.cfg.OSS.Bucket, w.cfg.OSS.Prefix, ck.device, mode)
	if err != nil {
		w.sts.release(client)
		w.log.Error().Err(err).Str("device", ck.device).Msg("cannot build device policy")
		d.fail(protocol.CodeInternal, retryMisconfig, "the token worker cannot build this device's policy")
		return nil, false
	}
	cr, err := w.callSTS(ctx, client, ck, pol)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			d.fail(protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
			return nil, false
		}
		o := classifySTSError(err)
		ev := w.log.Warn()
		if o.code == protocol.CodeInternal {
			ev = w.log.Error()
		}
		ev.Err(err).Str("device", ck.device).Str("sts_code", stsErrorCode(err)).Str("code", string(o.code)).Msg("AssumeRole failed")
		d.fail(o.code, o.retryAfter, o.message)
		return nil, false
	}
	return cr, true
}

// callSTS runs one AssumeRole call with the slot's client and caches what it returns. When
// ctx can be cancelled the call runs in its own goroutine, since the SDK takes no context.
func (w *Worker) callSTS(ctx context.Context, client *sts.Client, ck credKey, pol string) (*protocol.Credentials, error) {
	w.ctr.stsCalls.Add(1)
	call := func() (*protocol.Credentials, error) {
		defer w.sts.release(client)
		start := time.Now()
		cr, err := w.sts.assumeRole(client, ck.device, pol)
		if w.cfg.Metrics != nil {
			w.cfg.Metrics.observeSTS(time.Since(start), err)
		}
		if err == nil && w.cfg.ReuseMargin >= 0 {
			w.creds.put(ck, *cr, w.cfg.Now().Add(w.cfg.ReuseMargin))
		}
		return cr, err
	}
	if ctx.Done() == nil {
		return call()
	}
	type result struct {
		cr  *protocol.Credentials
		err error
	}
	ch := make(chan result, 1)
	w.stsWG.Add(1)
	go func() {
		defer w.stsWG.Done()
		cr, err := call()
		ch <- result{cr, err}
	}()
	select {
	case r := <-ch:
		return r.cr, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// acquireUntil waits for an STS slot until the time wait or until ctx is done.
func (w *Worker) acquireUntil(ctx context.Context, wait time.Time) (*sts.Client, bool, error) {
	d := time.Until(wait) // wait is on the real clock, as the job's arrival is
	if d <= 0 {
		return nil, false, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c := <-w.sts.slots:
		return w.sts.ready(c)
	case <-t.C:
		return nil, false, nil
	case <-ctx.Done():
		return nil, false, nil
	}
}

// sleepCtx sleeps for d; it returns false if ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (d *decision) fail(code protocol.Code, retryAfter time.Duration, msg string) {
	d.code, d.retryAfter, d.message = code, retryAfter, msg
}

// success builds the reply carrying d's credentials, sealed to the device unless disabled.
func (w *Worker) success(d *decision, key deviceKey, req *protocol.AuthRequest, now time.Time) ([]byte, error) {
	oss := w.cfg.OSS
	oss.Prefix = w.cfg.OSS.Prefix + d.device + "/"
	rep := protocol.AuthReply{
		V:          protocol.Version,
		ID:         req.ID,
		OK:         true,
		ServerTime: now.UTC(),
		OSS:        &oss,
	}
	var sealed []byte
	if *w.cfg.Seal {
		var err error
		if sealed, err = sealCredentials(key, req, &d.creds); err != nil {
			return nil, err
		}
		d.sealed = true
	} else {
		rep.Credentials = &d.creds
	}
	if key.request != nil && req.KID != w.cfg.FleetKeys.CurrentID() {
		rekey, err := w.rekey(key, req)
		if err != nil {
			return nil, err
		}
		rep.Rekey = base64.RawURLEncoding.EncodeToString(rekey)
		d.rekeyed = true
	}
	size := len(rep.Rekey) + replySizeHint + len(oss.Endpoint) + len(oss.Region) + len(oss.Bucket) + len(oss.Prefix) +
		base64.RawURLEncoding.EncodedLen(len(sealed)) + credentialsSize(&d.creds)
	return appendReply(make([]byte, 0, size), &rep, sealed), nil
}

// replySizeHint covers a reply's names, punctuation, ID and times.
const replySizeHint = 256

func credentialsSize(c *protocol.Credentials) int {
	return len(c.AccessKeyID) + len(c.AccessKeySecret) + len(c.SecurityToken) + 128
}

// ReplyAAD is the additional data a sealed reply is bound to: the device and the request.
func ReplyAAD(deviceID, requestID string) []byte {
	b := make([]byte, 0, len("clipgate-reply-v1\n")+len(deviceID)+1+len(requestID))
	b = append(b, "clipgate-reply-v1\n"...)
	b = append(b, deviceID...)
	b = append(b, '\n')
	return append(b, requestID...)
}

// RekeyAAD is the additional data a reply's rekey is bound to: the device and the request.
func RekeyAAD(deviceID, requestID string) []byte {
	return []byte("clipgate-rekey-v1\n" + deviceID + "\n" + requestID)
}

// rekey returns the device's keys under the current fleet key (protocol.Rekey JSON),
// sealed with the request key the request was signed with, always: keys never travel in
// clear, whatever Config.Seal says. The request key is still accepted (its fleet key is
// before its cutoff), so the device can open it.
func (w *Worker) rekey(key deviceKey, req *protocol.AuthRequest) ([]byte, error) {
	dk, err := identity.NewDeviceKey(w.cfg.FleetKeys, req.Device)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(protocol.Rekey{
		KID:     dk.KeyID,
		Connect: base64.RawURLEncoding.EncodeToString(dk.Connect),
		Request: base64.RawURLEncoding.EncodeToString(dk.Request),
	})
	if err != nil {
		return nil, err
	}
	var nonce [protocol.NonceSize]byte
	if n, err := base64.RawURLEncoding.Decode(nonce[:], []byte(req.Nonce)); err != nil || n != len(nonce) {
		return nil, fmt.Errorf("request nonce is not %d bytes of base64url", protocol.NonceSize)
	}
	sealed, err := identity.Seal(key.request, nonce[:], plain, RekeyAAD(req.Device, req.ID))
	clear(plain)
	clear(dk.Connect)
	clear(dk.Request)
	return sealed, err
}

// ReplyInfo is the HPKE info a reply sealed to a device certificate is bound to: the
// device and the request.
func ReplyInfo(deviceID, requestID string) []byte {
	return []byte("clipgate-reply-hpke-v1\n" + deviceID + "\n" + requestID)
}

// sealCredentials returns identity.Seal(request key, nonce, credentials JSON, aad), or for
// a certificate device identity.SealToPublicKey(its key, credentials JSON, ReplyInfo); the
// reply carries it in base64url.
func sealCredentials(key deviceKey, req *protocol.AuthRequest, cr *protocol.Credentials) ([]byte, error) {
	if key.cert != nil {
		plain := appendCredentials(make([]byte, 0, credentialsSize(cr)), cr)
		sealed, err := identity.SealToPublicKey(key.cert, plain, ReplyInfo(req.Device, req.ID))
		clear(plain)
		return sealed, err
	}
	// The nonce is 16 bytes in base64url without padding, as protocol.DecodeAuthRequest
	// checked.
	var nonce [protocol.NonceSize]byte
	if n, err := base64.RawURLEncoding.Decode(nonce[:], []byte(req.Nonce)); err != nil || n != len(nonce) {
		return nil, fmt.Errorf("request nonce is not %d bytes of base64url", protocol.NonceSize)
	}
	plain := appendCredentials(make([]byte, 0, credentialsSize(cr)), cr)
	sealed, err := identity.Seal(key.request, nonce[:], plain, ReplyAAD(req.Device, req.ID))
	clear(plain) // the plaintext credentials do not linger in freed memory
	return sealed, err
}

// failure builds the error reply for d.
func (w *Worker) failure(d *decision, now time.Time) []byte {
	rep := protocol.AuthReply{
		V:          protocol.Version,
		ID:         d.id,
		ServerTime: now.UTC(),
		Error: &protocol.ReplyError{
			Code:         d.code,
			Message:      truncate(d.message, protocol.MaxMessageLen),
			RetryAfterMs: retryMs(d.retryAfter),
		},
	}
	return appendReply(make([]byte, 0, replySizeHint+len(rep.Error.Message)), &rep, nil)
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// retryMs rounds d up to whole milliseconds, so that a positive wait never becomes 0.
func retryMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// audit writes the one log line per decision and counts it. It never logs a secret.
func (w *Worker) audit(d *decision) {
	var ev *zerolog.Event
	if d.code == "" {
		w.ctr.ok.Add(1)
		if d.cached {
			w.ctr.reused.Add(1)
		}
		ev = w.log.Info().Str("outcome", "ok")
	} else {
		w.ctr.countError(d.code)
		ev = w.log.Info().Str("outcome", "refused").Str("code", string(d.code)).Str("reason", d.message)
		if d.retryAfter > 0 {
			ev = ev.Int64("retry_after_ms", retryMs(d.retryAfter))
		}
	}
	ev.Str("device", d.device).Str("id", d.id).Bool("cached", d.cached).Bool("sealed", d.sealed).Bool("rekeyed", d.rekeyed).
		Dur("latency_ms", time.Since(d.start)).Msg("auth decision")
}

// drop logs and counts a request that gets no reply.
func (w *Worker) drop(topic string, size int, reason string) {
	w.ctr.dropped.Add(1)
	if len(topic) > 200 {
		topic = topic[:200] + "..."
	}
	w.log.Warn().Str("topic", topic).Int("size", size).Str("reason", reason).Msg("auth request dropped without reply")
}

// errorMessage is the device-facing text of a decoding error.
func errorMessage(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}

// salvage extracts the request and device IDs from a payload that failed strict decoding,
// so that the device can be told what was wrong. It returns "" for an ID that is missing or
// not a well-formed request ID; payloads larger than protocol.MaxMessageSize are not read.
func salvage(payload []byte) (id, device string) {
	if len(payload) > protocol.MaxMessageSize {
		return "", ""
	}
	var h struct {
		ID     any `json:"id"`
		Device any `json:"device"`
	}
	if json.Unmarshal(payload, &h) != nil {
		return "", ""
	}
	sid, _ := h.ID.(string)
	sdev, _ := h.Device.(string)
	if !validRequestID(sid) {
		sid = ""
	}
	return sid, sdev
}

// validRequestID reports whether a salvaged request ID is one a reply may carry:
// 1 to protocol.MaxIDLen of [A-Za-z0-9_-], as protocol requires.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > protocol.MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
