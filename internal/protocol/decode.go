package protocol

// DecodeAuthRequest strictly decodes an auth request of at most MaxAuthRequestSize
// bytes. Every defect is an *Error with CodeInvalid.
func DecodeAuthRequest(b []byte) (*AuthRequest, error) {
	req, unknown, err := decode[AuthRequest](b, MaxAuthRequestSize, "auth request")
	if err != nil {
		return nil, err
	}
	if err := finish(b, req.V, unknown); err != nil {
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
	rep, unknown, err := decode[AuthReply](b, MaxMessageSize, "auth reply")
	if err != nil {
		return nil, err
	}
	if err := finish(b, rep.V, unknown); err != nil {
		return nil, err
	}
	// A failed reply may carry an empty id and carries ok false: only presence tells.
	if rep.ID == "" && !hasMember(b, "id") {
		return nil, fieldErr("id", "is required")
	}
	if !rep.OK && !hasMember(b, "ok") {
		return nil, fieldErr("ok", "is required")
	}
	if err := rep.Validate(); err != nil {
		return nil, err
	}
	return rep, nil
}

// DecodeCredentials strictly decodes a Credentials object, such as the opened plaintext
// of a sealed reply. Every defect is an *Error with CodeInvalid.
func DecodeCredentials(b []byte) (*Credentials, error) {
	c, unknown, err := decode[Credentials](b, MaxMessageSize, "credentials")
	if err != nil {
		return nil, err
	}
	if unknown != nil {
		return nil, unknown
	}
	if err := ValidateCredentials(c); err != nil {
		return nil, err
	}
	return c, nil
}

// DecodeRekey strictly decodes the opened plaintext of a reply's rekey. Every defect is an
// *Error with CodeInvalid.
func DecodeRekey(b []byte) (*Rekey, error) {
	k, unknown, err := decode[Rekey](b, MaxAuthRequestSize, "rekey")
	if err != nil {
		return nil, err
	}
	if unknown != nil {
		return nil, unknown
	}
	if err := k.validate(); err != nil {
		return nil, err
	}
	return k, nil
}

// DecodeUploadEvent strictly decodes an upload event of at most MaxMessageSize bytes.
// Every defect is an *Error with CodeInvalid.
func DecodeUploadEvent(b []byte) (*UploadEvent, error) {
	ev, unknown, err := decode[UploadEvent](b, MaxMessageSize, "upload event")
	if err != nil {
		return nil, err
	}
	if err := finish(b, ev.V, unknown); err != nil {
		return nil, err
	}
	if ev.Status == StatusCompleted && ev.Size == 0 && !hasMember(b, "size") {
		return nil, fieldErr("size", "is required when status is %q", StatusCompleted)
	}
	if len(ev.Metadata) == 0 {
		ev.Metadata = nil // as json.Marshal omits it
	}
	if err := ValidateUploadEvent(ev); err != nil {
		return nil, err
	}
	return ev, nil
}
