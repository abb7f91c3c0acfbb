package protocol

import "math"

// Member names, in the order of their presence bits.
var (
	authRequestFields = []string{"v", "id", "device", "ts", "nonce", "mode", "sig"}
	authReplyFields   = []string{"v", "id", "ok", "serverTime", "credentials", "sealed", "oss", "error"}
	credentialsFields = []string{"accessKeyId", "accessKeySecret", "securityToken", "expiration"}
	credentialsPaths  = []string{"credentials.accessKeyId", "credentials.accessKeySecret",
		"credentials.securityToken", "credentials.expiration"}
	ossFields         = []string{"endpoint", "region", "bucket", "prefix"}
	replyErrorFields  = []string{"code", "message", "retryAfterMs"}
	uploadEventFields = []string{"v", "id", "device", "status", "bucket", "key", "size", "crc64",
		"contentType", "recordedAt", "uploadedAt", "attempts", "metadata", "error"}
)

// finish applies the checks common to every message once its object is read: nothing
// trails it, the version (if present) is known, no member is unknown, the required ones
// are present.
func (r *reader) finish(o *object, v int, required uint32) error {
	if err := r.end(); err != nil {
		return err
	}
	if o.has(0) && v != Version {
		return versionErr(v)
	}
	if r.unknown != nil {
		return r.unknown
	}
	return o.missing(required, "")
}

func (r *reader) version() (int, error) {
	v, err := r.integer("v", math.MinInt32, math.MaxInt32)
	return int(v), err
}

// DecodeAuthRequest strictly decodes an auth request of at most MaxAuthRequestSize
// bytes. Every defect is an *Error with CodeInvalid.
func DecodeAuthRequest(b []byte) (*AuthRequest, error) {
	r, err := newReader(b, MaxAuthRequestSize, "auth request")
	if err != nil {
		return nil, err
	}
	o, err := r.object("", authRequestFields)
	if err != nil {
		return nil, err
	}
	req := new(AuthRequest)
	for {
		i, more, err := o.next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		switch i {
		case 0:
			req.V, err = r.version()
		case 1:
			req.ID, err = r.str("id")
		case 2:
			req.Device, err = r.str("device")
		case 3:
			req.TS, err = r.str("ts")
		case 4:
			req.Nonce, err = r.str("nonce")
		case 5:
			req.Mode, err = r.str("mode")
		case 6:
			req.Sig, err = r.str("sig")
		}
		if err != nil {
			return nil, err
		}
	}
	if err := r.finish(&o, req.V, 1<<len(authRequestFields)-1); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}

// DecodeAuthReply strictly decodes an auth reply of at most MaxMessageSize bytes. Every
// defect is an *Error with CodeInvalid.
func DecodeAuthReply(b []byte) (*AuthReply, error) {
	r, err := newReader(b, MaxMessageSize, "auth reply")
	if err != nil {
		return nil, err
	}
	o, err := r.object("", authReplyFields)
	if err != nil {
		return nil, err
	}
	rep := new(AuthReply)
	for {
		i, more, err := o.next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		switch i {
		case 0:
			rep.V, err = r.version()
		case 1:
			rep.ID, err = r.str("id")
		case 2:
			rep.OK, err = r.boolean("ok")
		case 3:
			rep.ServerTime, err = r.time("serverTime")
		case 4:
			rep.Credentials, err = r.credentials("credentials")
		case 5:
			rep.Sealed, err = r.str("sealed")
		case 6:
			rep.OSS, err = r.oss()
		case 7:
			rep.Error, err = r.replyError()
		}
		if err != nil {
			return nil, err
		}
	}
	if err := r.finish(&o, rep.V, 0b1111); err != nil { // v, id, ok, serverTime
		return nil, err
	}
	if err := rep.Validate(); err != nil {
		return nil, err
	}
	return rep, nil
}

// DecodeCredentials strictly decodes a Credentials object, such as the opened plaintext
// of a sealed reply. Every defect is an *Error with CodeInvalid.
func DecodeCredentials(b []byte) (*Credentials, error) {
	r, err := newReader(b, MaxMessageSize, "credentials")
	if err != nil {
		return nil, err
	}
	c, err := r.credentials("")
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	if r.unknown != nil {
		return nil, r.unknown
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (r *reader) credentials(field string) (*Credentials, error) {
	o, err := r.object(field, credentialsFields)
	if err != nil {
		return nil, err
	}
	c := new(Credentials)
	for {
		i, more, err := o.next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		name := credentialsPaths[i]
		if field == "" {
			name = credentialsFields[i]
		}
		switch i {
		case 0:
			c.AccessKeyID, err = r.str(name)
		case 1:
			c.AccessKeySecret, err = r.str(name)
		case 2:
			c.SecurityToken, err = r.str(name)
		case 3:
			c.Expiration, err = r.time(name)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, o.missing(0b1111, "")
}

func (r *reader) oss() (*OSSInfo, error) {
	o, err := r.object("oss", ossFields)
	if err != nil {
		return nil, err
	}
	info := new(OSSInfo)
	for {
		i, more, err := o.next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		switch i {
		case 0:
			info.Endpoint, err = r.str("oss.endpoint")
		case 1:
			info.Region, err = r.str("oss.region")
		case 2:
			info.Bucket, err = r.str("oss.bucket")
		case 3:
			info.Prefix, err = r.str("oss.prefix")
		}
		if err != nil {
			return nil, err
		}
	}
	return info, o.missing(0b111, "") // endpoint, region, bucket
}

func (r *reader) replyError() (*ReplyError, error) {
	o, err := r.object("error", replyErrorFields)
	if err != nil {
		return nil, err
	}
	e := new(ReplyError)
	for {
		i, more, err := o.next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		switch i {
		case 0:
			var code string
			code, err = r.str("error.code")
			e.Code = Code(code)
		case 1:
			e.Message, err = r.str("error.message")
		case 2:
			e.RetryAfterMs, err = r.integer("error.retryAfterMs", 0, MaxRetryAfterMs)
		}
		if err != nil {
			return nil, err
		}
	}
	return e, o.missing(0b1, "") // code
}

// DecodeUploadEvent strictly decodes an upload event of at most MaxMessageSize bytes.
// Every defect is an *Error with CodeInvalid.
func DecodeUploadEvent(b []byte) (*UploadEvent, error) {
	r, err := newReader(b, MaxMessageSize, "upload event")
	if err != nil {
		return nil, err
	}
	o, err := r.object("", uploadEventFields)
	if err != nil {
		return nil, err
	}
	ev := new(UploadEvent)
	for {
		i, more, err := o.next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		switch i {
		case 0:
			ev.V, err = r.version()
		case 1:
			ev.ID, err = r.str("id")
		case 2:
			ev.Device, err = r.str("device")
		case 3:
			ev.Status, err = r.str("status")
		case 4:
			ev.Bucket, err = r.str("bucket")
		case 5:
			ev.Key, err = r.str("key")
		case 6:
			ev.Size, err = r.integer("size", 0, math.MaxInt64)
		case 7:
			ev.CRC64, err = r.str("crc64")
		case 8:
			ev.ContentType, err = r.str("contentType")
		case 9:
			ev.RecordedAt, err = r.time("recordedAt")
		case 10:
			ev.UploadedAt, err = r.time("uploadedAt")
		case 11:
			var n int64
			n, err = r.integer("attempts", 0, math.MaxInt32)
			ev.Attempts = int(n)
		case 12:
			ev.Metadata, err = r.stringMap("metadata", MaxMetadata)
		case 13:
			ev.Error, err = r.str("error")
		}
		if err != nil {
			return nil, err
		}
	}
	if err := r.finish(&o, ev.V, 0b1111); err != nil { // v, id, device, status
		return nil, err
	}
	if ev.Status == StatusCompleted {
		// bucket, key, size, crc64, uploadedAt
		if err := o.missing(1<<4|1<<5|1<<6|1<<7|1<<10, " when status is \"completed\""); err != nil {
			return nil, err
		}
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}
