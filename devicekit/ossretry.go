package devicekit

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// OSS request signatures and the device clock.
//
// aliyun-oss-go-sdk v3.0.2 sets every request's Date header from time.Now(), then applies
// the request's own headers, then signs (conn.go, doRequest). Both V1 (the Date line of the
// string to sign) and V4 (the signing date as given, and the scope day parsed from it) sign
// the header's final value, so a Date passed with oss.SetHeader replaces the system time in
// the signature. Once it has learned that the device clock is off, the kit passes its
// server-corrected clock (Config.Now plus the offset learned from the auth replies'
// serverTime) on every OSS request it makes, so a camera whose system clock is hours off
// still signs requests that OSS (±15 minutes) accepts.
//
// UploadFile forwards only a few options to its UploadPart and CompleteMultipartUpload
// calls (ChoiceTransferPartOption, ChoiceCompletePartOption): not SetHeader. Its parts
// would be signed with the system clock, so the kit runs multipart uploads itself, with a
// fresh Date on every request (multipart.go).

// dateHeader returns the Date header option for one OSS request: the kit's best guess of
// the server time, once the kit has learned that the device clock is off (by more than
// dateSlack); until then the SDK's own Date, the system clock, is as good. Compute it per
// request: OSS refuses a Date more than 15 minutes old.
func (k *Kit) dateHeader() oss.Option {
	if time.Duration(k.offset.Load()).Abs() <= dateSlack {
		return sdkDate
	}
	return oss.SetHeader(oss.HTTPHeaderDate, k.now().UTC().Format(http.TimeFormat))
}

// dateSlack is the clock offset below which the kit leaves the Date to the SDK: every
// learned offset carries some network delay, and a second is nothing to OSS.
const dateSlack = time.Second

// sdkDate is an option that sets nothing (SetHeader ignores a nil value).
var sdkDate = oss.SetHeader(oss.HTTPHeaderDate, nil)

// serviceError returns the OSS error in err, whether the SDK returned it as a value or a
// pointer.
func serviceError(err error) (oss.ServiceError, bool) {
	var se oss.ServiceError
	if errors.As(err, &se) {
		return se, true
	}
	var sp *oss.ServiceError
	if errors.As(err, &sp) && sp != nil {
		return *sp, true
	}
	return oss.ServiceError{}, false
}

// clockRefused reports whether OSS refused a request for its Date: the kit's clock offset
// is stale. New credentials bring a fresh serverTime.
func clockRefused(err error) bool {
	se, ok := serviceError(err)
	return ok && se.StatusCode == http.StatusForbidden && se.Code == "RequestTimeTooSkewed"
}

// transientOSS reports whether an OSS request failed in a way that trying again later may
// cure: the network (connection refused or reset, timeouts, a cut response), a 5xx answer,
// OSS's own RequestTimeout, a multipart upload that OSS no longer knows (it is started
// again), or errTryAgain. The caller checks its context first: a cancelled request is not transient.
func transientOSS(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, errTryAgain) {
		return true
	}
	// A local file error (the clip was deleted) is not the network's, although its
	// syscall.Errno passes for a net.Error below.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	if se, ok := serviceError(err); ok {
		return se.StatusCode >= 500 || se.Code == "RequestTimeout" || se.Code == "NoSuchUpload"
	}
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// ossRetry decides, failure by failure, whether an OSS operation is tried again.
type ossRetry struct {
	renewed   bool // credentials renewed once already
	transient int  // transient failures so far
}

// next returns what to do after err: renew the credentials (and with them the clock
// offset) and try again at once, once per operation, when OSS refused the credentials or
// the request time; wait and try again after a transient failure, at most
// ossBackoff.Attempts tries; otherwise give up (ok false).
func (r *ossRetry) next(err error) (renew bool, wait time.Duration, ok bool) {
	switch {
	case credentialsRefused(err) || clockRefused(err):
		if r.renewed {
			return false, 0, false
		}
		r.renewed = true
		return true, 0, true
	case transientOSS(err) && r.transient+1 < ossBackoff.Attempts:
		r.transient++
		return false, ossBackoff.Delay(r.transient-1, 0), true
	}
	return false, 0, false
}

// sleep waits for d, or until ctx ends or the kit closes.
func (k *Kit) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-k.ctx.Done():
		return ErrClosed
	}
}
