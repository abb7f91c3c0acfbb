package devicekit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Credentials are temporary OSS credentials with where to use them.
type Credentials struct {
	clipgate.Credentials
	OSS clipgate.OSSInfo

	mode clipgate.Mode // the mode they were asked for; "" is Config.Mode
}

// GetAccessKeyID, GetAccessKeySecret and GetSecurityToken make *Credentials an
// oss.Credentials.
func (c *Credentials) GetAccessKeyID() string { return c.AccessKeyID }

// GetAccessKeySecret returns the temporary access key secret.
func (c *Credentials) GetAccessKeySecret() string { return c.AccessKeySecret }

// GetSecurityToken returns the STS security token.
func (c *Credentials) GetSecurityToken() string { return c.SecurityToken }

// Retry policy of a credentials fetch (credentialsBackoff): at most maxAttempts requests,
// exponential backoff with full jitter between backoffBase and backoffCap, and never less
// than the worker's retryAfterMs.
const (
	maxAttempts = 8
	backoffBase = 250 * time.Millisecond
	backoffCap  = 15 * time.Second
	// maxRetryAfter caps a retryAfterMs so that one reply cannot park the device for a day.
	maxRetryAfter = 5 * time.Minute
)

// replyAAD is the additional data sealed credentials are bound to.
func replyAAD(deviceID, requestID string) []byte {
	return []byte("clipgate-reply-v1\n" + deviceID + "\n" + requestID)
}

// replyInfo is the HPKE info of credentials sealed to the device's certificate.
func replyInfo(deviceID, requestID string) []byte {
	return []byte("clipgate-reply-hpke-v1\n" + deviceID + "\n" + requestID)
}

// Credentials returns valid credentials, from the cache while they have more than
// RefreshMargin left (by the server-corrected clock), otherwise from the token worker.
// Concurrent callers share one request, and the result: do not modify it.
// Errors: *clipgate.AuthError for a refusal, ErrNotConnected, ErrClosed, a timeout error when no
// worker answered, or ctx's error.
func (k *Kit) Credentials(ctx context.Context) (*Credentials, error) {
	return k.credentials(ctx, "")
}

// credentials is Credentials for mode ("" is Config.Mode): each mode has its own cache.
func (k *Kit) credentials(ctx context.Context, mode clipgate.Mode) (*Credentials, error) {
	if mode == k.cfg.Mode {
		mode = ""
	}
	if c := k.cachedMode(mode); c != nil {
		return c, nil
	}
	ch := k.sf.DoChan("credentials/"+string(mode), func() (any, error) {
		if !k.enter() {
			return nil, ErrClosed
		}
		defer k.wg.Done()
		if c := k.cachedMode(mode); c != nil { // filled while we queued
			return c, nil
		}
		if c := k.loadCredentials(mode); c != nil { // kept on disk by an earlier run
			return c, nil
		}
		// The fetch is shared: it runs until it succeeds, gives up or the kit closes, not
		// until the first caller's ctx ends.
		return k.fetch(k.ctx, mode)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Credentials), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cached returns the cached credentials of Config.Mode if they are still fresh enough.
func (k *Kit) cached() *Credentials { return k.cachedMode("") }

func (k *Kit) cachedMode(mode clipgate.Mode) *Credentials {
	c := k.cacheFor(mode).Load()
	if c == nil || !k.fresh(c) {
		return nil
	}
	return c
}

// fresh reports whether c has more than RefreshMargin left by the server-corrected clock:
// the test for credentials in memory and on disk alike.
func (k *Kit) fresh(c *Credentials) bool {
	return k.now().Before(c.Expiration.Add(-k.cfg.RefreshMargin))
}

// cacheFor returns the cache of mode ("" is Config.Mode).
func (k *Kit) cacheFor(mode clipgate.Mode) *atomic.Pointer[Credentials] {
	if mode == "" {
		return &k.cache
	}
	c, _ := k.modeCache.LoadOrStore(mode, new(atomic.Pointer[Credentials]))
	return c.(*atomic.Pointer[Credentials])
}

// invalidate drops c from the cache (if it is still the cached value), so that the next
// call fetches new credentials.
func (k *Kit) invalidate(c *Credentials) {
	if c != nil && k.cacheFor(c.mode).CompareAndSwap(c, nil) {
		k.forgetCredentials(c.mode) // nor from disk after a restart
	}
}

// fetch asks the token worker for credentials, with the retry policy above.
func (k *Kit) fetch(ctx context.Context, mode clipgate.Mode) (*Credentials, error) {
	var lastErr error
	for attempt := range maxAttempts {
		if attempt > 0 {
			k.log.Debug().Int("attempt", attempt+1).AnErr("previous", lastErr).Msg("retrying credentials request")
		}
		var wait time.Duration
		reply, nonce, err := k.request(ctx, mode)
		switch {
		case err != nil:
			if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotConnected) || ctx.Err() != nil {
				return nil, err
			}
			lastErr, wait = err, backoff(attempt, 0)
		case reply.OK:
			return k.accept(reply, mode, nonce)
		default:
			e := reply.Error
			aerr := &clipgate.AuthError{Code: e.Code, Message: e.Message, RetryAfter: e.RetryAfter()}
			lastErr = aerr
			switch {
			case e.Code.Terminal() || e.Code == clipgate.CodeQuotaExceeded:
				// A quota resets in hours: the caller (a Spool) keeps the clip and retries.
				return nil, aerr
			case e.Code == clipgate.CodeClockSkew || e.Code == clipgate.CodeReplay:
				// The offset was learned from serverTime; the next request is signed anew
				// with a fresh timestamp and nonce, at once.
				k.log.Info().Str("code", string(e.Code)).Msg("credentials request refused; re-signing")
			default: // rate_limited, busy, unavailable, internal
				wait = backoff(attempt, aerr.RetryAfter)
			}
		}
		if wait > 0 && attempt < maxAttempts-1 {
			if err := k.wait(ctx, lastErr, wait); err != nil {
				return nil, err
			}
		}
	}
	return nil, fmt.Errorf("devicekit: no credentials after %d attempts: %w", maxAttempts, lastErr)
}

// backoff returns the wait before retry number attempt+1 of a credentials request (see
// backoffPolicy).
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	return credentialsBackoff.Delay(attempt, retryAfter)
}

// wait sleeps for d, the backoff after err, or until ctx ends.
func (k *Kit) wait(ctx context.Context, err error, d time.Duration) error {
	if k.onRetry != nil {
		k.onRetry(err, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errKitClosed) {
			return ErrClosed
		}
		return ctx.Err()
	}
}

// request sends one signed auth request and waits for its reply, which it returns with the
// request's nonce; the wait for the connection, the PUBACK and the reply together take at
// most RequestTimeout.
func (k *Kit) request(ctx context.Context, mode clipgate.Mode) (*protocol.AuthReply, []byte, error) {
	if mode == "" {
		mode = k.cfg.Mode
	}
	rctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
	defer cancel()
	client, err := k.ready(rctx)
	if err != nil {
		return nil, nil, k.ctxErr(ctx, err)
	}
	var nonce [protocol.NonceSize]byte
	rand.Read(nonce[:])
	req := &protocol.AuthRequest{
		V:      protocol.Version,
		ID:     newID(),
		Device: k.cfg.DeviceID,
		TS:     k.now().UTC().Format(time.RFC3339Nano),
		Nonce:  base64.RawURLEncoding.EncodeToString(nonce[:]),
		Mode:   mode,
	}
	key := k.deviceKey()
	if key != nil {
		req.KID = key.KeyID
		req.Sig = identity.Sign(key.Request, req.SigningString())
	} else {
		req.Cert = base64.RawURLEncoding.EncodeToString(k.certDER)
		sig, err := identity.SignWithKey(k.certKey, req.SigningString())
		if err != nil {
			return nil, nil, fmt.Errorf("devicekit: signing the auth request with the certificate's key: %w", err)
		}
		req.Sig = base64.RawURLEncoding.EncodeToString(sig)
	}
	payload, err := protocol.Encode(req)
	if err != nil {
		return nil, nil, fmt.Errorf("devicekit: encoding the auth request: %w", err)
	}

	ch := make(chan *protocol.AuthReply, 1)
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil, nil, ErrClosed
	}
	k.waiters[req.ID] = ch
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.waiters, req.ID)
		k.mu.Unlock()
	}()

	tok := client.Publish(k.requestTopic, 1, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, nil, fmt.Errorf("devicekit: publishing the auth request: %w", err)
		}
	case <-rctx.Done():
		return nil, nil, k.ctxErr(ctx, errors.New("devicekit: the broker did not acknowledge the auth request in time"))
	}
	select {
	case reply, ok := <-ch:
		if !ok {
			return nil, nil, ErrClosed
		}
		reply.Credentials = k.withNonce(reply, key, nonce[:])
		if reply.OK && reply.Rekey != "" && key != nil {
			k.applyRekey(reply, key, nonce[:])
		}
		return reply, nonce[:], nil
	case <-rctx.Done():
		return nil, nil, k.ctxErr(ctx, fmt.Errorf("devicekit: no auth reply within %v (is a token worker running?)", k.cfg.RequestTimeout))
	}
}

// ctxErr returns ErrClosed if the kit was closed, ctx's error if ctx ended, else err.
func (k *Kit) ctxErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), errKitClosed):
		return ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

// rekeyAAD is the additional data a reply's new keys are bound to.
func rekeyAAD(deviceID, requestID string) []byte {
	return []byte("clipgate-rekey-v1\n" + deviceID + "\n" + requestID)
}

// applyRekey opens the new keys of a reply to a request signed with old, persists them to
// Config.DeviceKeyFile (atomically) and uses them from then on: the next MQTT password and
// request. A rekey that does not open or decode is logged and ignored: the old key still
// works until its cutoff, and the next reply offers the new keys again.
func (k *Kit) applyRekey(reply *protocol.AuthReply, old *identity.DeviceKey, nonce []byte) {
	sealed, err := base64.RawURLEncoding.DecodeString(reply.Rekey)
	if err != nil {
		k.log.Error().Err(err).Msg("rekey is not base64url")
		return
	}
	plain, err := identity.Open(old.Request, nonce, sealed, rekeyAAD(k.cfg.DeviceID, reply.ID))
	if err != nil {
		k.log.Error().Err(err).Msg("the new device key does not open with the device key")
		return
	}
	rk, err := protocol.DecodeRekey(plain)
	clear(plain)
	if err != nil {
		k.log.Error().Err(err).Msg("the new device key is malformed")
		return
	}
	nk := &identity.DeviceKey{Device: k.cfg.DeviceID, KeyID: rk.KID}
	nk.Connect, _ = base64.RawURLEncoding.DecodeString(rk.Connect) // DecodeRekey checked both
	nk.Request, _ = base64.RawURLEncoding.DecodeString(rk.Request)
	if err := nk.Validate(); err != nil {
		k.log.Error().Err(err).Msg("the new device key is malformed")
		return
	}
	k.rekeyMu.Lock()
	defer k.rekeyMu.Unlock()
	if k.key.Load() != old { // another reply rotated it first
		return
	}
	if k.cfg.DeviceKeyFile != "" {
		if err := identity.WriteDeviceKey(k.cfg.DeviceKeyFile, nk); err != nil {
			// Not used yet: after a restart the file's old key must still match what we use.
			k.log.Error().Err(err).Str("file", k.cfg.DeviceKeyFile).Msg("cannot save the new device key; keeping the old one")
			return
		}
	}
	k.key.Store(nk)
	k.log.Info().Str("old", old.KeyID).Str("new", nk.KeyID).Msg("device key rotated")
}

// deviceKey returns the current device key; do not modify it.
func (k *Kit) deviceKey() *identity.DeviceKey { return k.key.Load() }

// withNonce opens sealed credentials of reply with the request's nonce; plain
// credentials are returned as they are. Opening failures leave Credentials nil, which
// accept reports.
func (k *Kit) withNonce(reply *protocol.AuthReply, key *identity.DeviceKey, nonce []byte) *clipgate.Credentials {
	if !reply.OK || reply.Sealed == "" {
		return reply.Credentials
	}
	sealed, err := base64.RawURLEncoding.DecodeString(reply.Sealed)
	if err != nil {
		k.log.Error().Err(err).Msg("sealed credentials are not base64url")
		return nil
	}
	var plain []byte
	if key != nil {
		plain, err = identity.Open(key.Request, nonce, sealed, replyAAD(k.cfg.DeviceID, reply.ID))
	} else {
		plain, err = identity.OpenWithPrivateKey(k.certKey, sealed, replyInfo(k.cfg.DeviceID, reply.ID))
	}
	if err != nil {
		k.log.Error().Err(err).Msg("sealed credentials do not open with the device's key")
		return nil
	}
	c, err := protocol.DecodeCredentials(plain)
	clear(plain)
	if err != nil {
		k.log.Error().Err(err).Msg("sealed credentials are not credentials JSON")
		return nil
	}
	return c
}

// accept checks the credentials of a successful reply to the request with nonce, caches
// them, and keeps them sealed on disk (credcache.go).
func (k *Kit) accept(reply *protocol.AuthReply, mode clipgate.Mode, nonce []byte) (*Credentials, error) {
	if reply.Credentials == nil {
		return nil, errors.New("devicekit: the auth reply's sealed credentials could not be opened (wrong device key or a tampered reply)")
	}
	if err := protocol.ValidateCredentials(reply.Credentials); err != nil {
		return nil, fmt.Errorf("devicekit: the auth reply's credentials are incomplete: %w", err)
	}
	if !reply.Credentials.Expiration.After(k.now()) {
		return nil, fmt.Errorf("devicekit: the auth reply's credentials expired at %s", reply.Credentials.Expiration.Format(time.RFC3339))
	}
	c := &Credentials{Credentials: *reply.Credentials, OSS: *reply.OSS, mode: mode}
	k.cacheFor(mode).Store(c)
	k.refreshes.Add(1)
	k.log.Debug().Time("expiration", c.Expiration).Msg("new credentials")
	k.keepCredentials(c, reply, nonce)
	return c, nil
}

// onReply routes an auth reply to the request waiting for it. Replies that do not
// decode, and replies for unknown or finished requests, are dropped.
func (k *Kit) onReply(m mqttclient.Message) {
	reply, err := protocol.DecodeAuthReply(m.Payload())
	if err != nil {
		k.log.Warn().Err(err).Msg("malformed auth reply dropped")
		return
	}
	k.mu.Lock()
	ch, ok := k.waiters[reply.ID]
	delete(k.waiters, reply.ID)
	k.mu.Unlock()
	if !ok {
		k.log.Debug().Str("id", reply.ID).Msg("auth reply for no pending request dropped")
		return
	}
	k.learnTime(reply.ServerTime) // only from replies to live requests: stale ones would mislead
	ch <- reply                   // buffered, and the only send
}
