package localcloud

import (
	"bytes"
	"encoding/xml"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

var errNoSuchBucket = &Error{Status: http.StatusNotFound, Code: "NoSuchBucket", Message: "The specified bucket does not exist."}

// parseCopySource splits x-oss-copy-source, "/bucket/key" with the key URL-encoded and an
// optional "?versionId=", as the SDKs send it. The key is decoded as a query value:
// aliyun-oss-go-sdk escapes it with url.QueryEscape (a space becomes "+"), and
// alibabacloud-oss-go-sdk-v2 and ali-oss percent-encode "+" itself, so both round-trip.
func parseCopySource(v string) (bucketName, key string, err error) {
	bad := errInvalidArgument("x-oss-copy-source must be /bucket/key with the key URL-encoded.")
	v = strings.TrimPrefix(v, "/")
	v, query, hasQuery := strings.Cut(v, "?")
	bucketName, rawKey, ok := strings.Cut(v, "/")
	if !ok || bucketName == "" || rawKey == "" {
		return "", "", bad
	}
	if key, err = url.QueryUnescape(rawKey); err != nil {
		return "", "", bad
	}
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil || len(q) != 1 || !q.Has("versionId") {
			return "", "", bad
		}
		// Buckets here are never versioned: only the null version exists.
		if q.Get("versionId") != "null" {
			return "", "", &Error{Status: http.StatusNotFound, Code: "NoSuchVersion", Message: "The specified version does not exist."}
		}
	}
	return bucketName, key, nil
}

// copyObject serves CopyObject (PUT with x-oss-copy-source) within a bucket or between the
// buckets of this server, following https://www.alibabacloud.com/help/en/oss/developer-reference/copyobject:
// oss:PutObject on the target (checked by the router) and oss:GetObject on the source;
// x-oss-metadata-directive COPY (default: the source's Content-Type and metadata) or REPLACE
// (the request's); the x-oss-copy-source-if-* conditions (412, or 304); and
// x-oss-forbid-overwrite. The copy keeps the source's ETag, CRC-64 and type. Appendable
// sources are refused: "Objects created by using the AppendObject operation cannot be
// copied" (https://www.alibabacloud.com/help/doc-detail/31979.htm); the docs give no code
// for that refusal, so it is InvalidRequest here.
func (s *ossService) copyObject(rq *ossRequest) error {
	srcName, srcKey, err := parseCopySource(rq.r.Header.Get("x-oss-copy-source"))
	if err != nil {
		return err
	}
	src := s.store.buckets[srcName]
	if src == nil {
		return errNoSuchBucket
	}
	if err := validObjectName(srcKey); err != nil {
		return err
	}
	srcRq := *rq
	srcRq.bucketName, srcRq.bucket, srcRq.key = srcName, src, srcKey
	if err := s.authorize(&srcRq, "oss:GetObject"); err != nil {
		return err
	}
	forbid, err := forbidOverwrite(rq.r)
	if err != nil {
		return err
	}
	replace := false
	switch d := rq.r.Header.Get("x-oss-metadata-directive"); d {
	case "", "COPY":
	case "REPLACE":
		replace = true
	default:
		return errInvalidArgument("x-oss-metadata-directive must be COPY or REPLACE.")
	}
	var headers map[string]string
	if replace {
		if headers, err = objectHeaders(rq.r); err != nil {
			return err
		}
	}

	o, ok := src.acquire(srcKey)
	if !ok {
		return errNoSuchKey
	}
	defer src.release(o)
	if o.Type == objectAppendable {
		return &Error{Status: http.StatusBadRequest, Code: "InvalidRequest", Message: "An appendable object cannot be copied."}
	}
	switch preconditions(rq.r.Header, "x-oss-copy-source-", &o.objectMeta) {
	case http.StatusPreconditionFailed:
		return &Error{Status: http.StatusPreconditionFailed, Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold."}
	case http.StatusNotModified:
		rq.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	b := rq.bucket
	if _, exists := b.get(rq.key); forbid && exists {
		return errFileExists
	}
	m := &objectMeta{Key: rq.key, Type: o.Type, Size: o.Size, CRC64: o.CRC64, ETag: o.ETag, Modified: rq.now,
		ContentType: o.ContentType, Headers: maps.Clone(o.Headers)}
	if replace {
		m.ContentType, m.Headers = contentType(rq.r), headers
	}
	if m.Segments, err = b.cloneData(src, o); err != nil {
		return err
	}
	unlock := b.locks.lock(rq.key)
	err = b.commit(rq.key, m, forbid)
	unlock()
	if err != nil {
		b.removeBlobs(blobNames(m.Segments))
		if errors.Is(err, errObjectExists) {
			return errFileExists
		}
		return err
	}
	rq.w.Header().Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	return rq.writeXML(struct {
		XMLName      xml.Name `xml:"CopyObjectResult"`
		ETag         string
		LastModified string
	}{ETag: quoteETag(m.ETag), LastModified: m.Modified.UTC().Format(xmlTime)})
}

// maxDeleteBody bounds a DeleteMultipleObjects document: 1000 keys of 1023 bytes, each
// character XML-escaped, fit.
const maxDeleteBody = 8 << 20

// maxDeleteKeys is how many objects one DeleteMultipleObjects may name.
const maxDeleteKeys = 1000

// deleteMultiple serves DeleteMultipleObjects (POST /bucket/?delete), following
// https://www.alibabacloud.com/help/en/oss/developer-reference/deletemultipleobjects:
// Content-MD5 is required (https://www.alibabacloud.com/help/en/oss/user-guide/0016-00000606;
// the page names no code, MissingArgument is OSS's code for a missing argument), up to 1000
// keys, quiet mode (no Deleted entries), encoding-type=url for the keys in the response, and
// absent keys reported as deleted. Each key needs oss:DeleteObject on that object; if any
// is denied the whole request is refused with nothing deleted (the docs do not say whether
// OSS deletes the allowed ones).
func (s *ossService) deleteMultiple(rq *ossRequest) error {
	enc, err := rq.encoder()
	if err != nil {
		return err
	}
	if rq.r.Header.Get("Content-MD5") == "" {
		return &Error{Status: http.StatusBadRequest, Code: "MissingArgument",
			Message: "DeleteMultipleObjects needs the Content-MD5 header.", EC: "0016-00000606"}
	}
	body, err := s.readSmallBody(rq, maxDeleteBody)
	if err != nil {
		return err
	}
	var doc struct {
		XMLName xml.Name `xml:"Delete"`
		Quiet   string   `xml:"Quiet"`
		Objects []struct {
			Key       *string `xml:"Key"`
			VersionId string  `xml:"VersionId"`
		} `xml:"Object"`
	}
	malformed := func(detail string) error {
		return &detailedError{e: &Error{Status: http.StatusBadRequest, Code: "MalformedXML", Message: errMalformedXML.Message, EC: "0016-00000608"},
			fields: []xmlField{{"ErrorDetail", detail}}}
	}
	body, restore, ok := controlRefs(body)
	if !ok {
		return malformed("The body uses every private-use range this server needs for control characters.")
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		return malformed("The body is not a Delete document.")
	}
	quiet := false
	switch q := strings.TrimSpace(doc.Quiet); {
	case q == "" || strings.EqualFold(q, "false"):
	case strings.EqualFold(q, "true"):
		quiet = true
	default:
		return malformed("Quiet must be true or false.")
	}
	if len(doc.Objects) == 0 || len(doc.Objects) > maxDeleteKeys {
		return malformed("A Delete document names 1 to 1000 objects.")
	}
	keys := make([]string, len(doc.Objects))
	for i, o := range doc.Objects {
		if o.Key == nil {
			return &Error{Status: http.StatusBadRequest, Code: "MalformedXML", Message: errMalformedXML.Message, EC: "0016-00000613"}
		}
		if v := strings.TrimSpace(o.VersionId); v != "" && v != "null" {
			return &Error{Status: http.StatusNotFound, Code: "NoSuchVersion", Message: "The specified version does not exist."}
		}
		keys[i] = restore(*o.Key)
		if err := validObjectName(keys[i]); err != nil {
			return err
		}
	}
	for _, k := range keys {
		objRq := *rq
		objRq.key = k
		if err := s.authorize(&objRq, "oss:DeleteObject"); err != nil {
			return err
		}
	}
	b := rq.bucket
	for _, k := range keys {
		unlock := b.locks.lock(k)
		err := b.commit(k, nil, false)
		unlock()
		if err != nil {
			return err
		}
	}
	type deleted struct {
		Key string
	}
	res := struct {
		XMLName      xml.Name  `xml:"DeleteResult"`
		EncodingType string    `xml:",omitempty"`
		Deleted      []deleted `xml:"Deleted"`
	}{EncodingType: rq.encodingType()}
	if !quiet {
		for _, k := range keys {
			res.Deleted = append(res.Deleted, deleted{enc(k)})
		}
	}
	return rq.writeXML(&res)
}

// controlRefs makes a DeleteMultipleObjects body parseable by encoding/xml. Keys may hold
// control characters, which aliyun-oss-go-sdk writes as character references ("&#x01;") and
// OSS accepts, but XML 1.0 forbids and encoding/xml rejects. Each such reference is replaced
// by a code point of a private-use range that the body does not otherwise contain; restore
// maps a decoded string back. ok is false only if the body uses every candidate range.
func controlRefs(body []byte) (out []byte, restore func(string) string, ok bool) {
	if !bytes.Contains(body, []byte("&#")) {
		return body, func(s string) string { return s }, true
	}
	for _, base := range []rune{0xF0000, 0x100000, 0xE000} {
		if out, ok := replaceControlRefs(body, base); ok {
			return out, func(s string) string {
				return strings.Map(func(r rune) rune {
					if r >= base && r < base+0x20 {
						return r - base
					}
					return r
				}, s)
			}, true
		}
	}
	return nil, nil, false
}

// replaceControlRefs rewrites references to characters below 0x20 (but tab, newline and
// carriage return, which XML allows) as base+c, failing if the body already holds a code
// point in [base, base+0x20), literally or as a reference.
func replaceControlRefs(body []byte, base rune) ([]byte, bool) {
	inRange := func(r rune) bool { return r >= base && r < base+0x20 }
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRune(body[i:])
		if inRange(r) {
			return nil, false
		}
		i += n
	}
	var out []byte
	rest := body
	for {
		i := bytes.Index(rest, []byte("&#"))
		if i < 0 {
			return append(out, rest...), true
		}
		out = append(out, rest[:i]...)
		rest = rest[i:]
		end := bytes.IndexByte(rest, ';')
		if end < 0 || end > 12 {
			out, rest = append(out, rest[:2]...), rest[2:]
			continue
		}
		num, b := string(rest[2:end]), 10
		if strings.HasPrefix(num, "x") {
			num, b = num[1:], 16
		}
		c, err := strconv.ParseUint(num, b, 32)
		switch {
		case err != nil:
			out = append(out, rest[:end+1]...)
		case inRange(rune(c)):
			return nil, false
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			out = utf8.AppendRune(out, base+rune(c))
		default:
			out = append(out, rest[:end+1]...)
		}
		rest = rest[end+1:]
	}
}
