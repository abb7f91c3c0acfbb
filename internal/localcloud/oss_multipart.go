package localcloud

import (
	"bytes"
	"crypto/md5"
	"encoding/xml"
	"errors"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxCompleteBody bounds a CompleteMultipartUpload document (10000 parts fit in ~1 MB).
const maxCompleteBody = 2 << 20

// xmlTime is OSS's timestamp format in XML documents.
const xmlTime = "2006-01-02T15:04:05.000Z"

// encoder returns the function that encodes keys in a response: URL encoding with
// encoding-type=url, identity otherwise.
func (rq *ossRequest) encoder() (func(string) string, error) {
	switch rq.query.Get("encoding-type") {
	case "":
		if rq.query.Has("encoding-type") {
			return nil, errInvalidArgument("encoding-type must be url.")
		}
		return func(s string) string { return s }, nil
	case "url":
		return queryEscape, nil
	}
	return nil, errInvalidArgument("encoding-type must be url.")
}

func (rq *ossRequest) encodingType() string { return rq.query.Get("encoding-type") }

// writeXML writes v as an XML document with status 200.
func (rq *ossRequest) writeXML(v any) error {
	body, err := xml.Marshal(v)
	if err != nil {
		return err
	}
	h := rq.w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	rq.w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(rq.w, xml.Header)
	_, _ = rq.w.Write(body)
	return nil
}

func (s *ossService) initiateUpload(rq *ossRequest) error {
	enc, err := rq.encoder()
	if err != nil {
		return err
	}
	headers, err := objectHeaders(rq.r)
	if err != nil {
		return err
	}
	forbid, err := forbidOverwrite(rq.r)
	if err != nil {
		return err
	}
	if _, exists := rq.bucket.get(rq.key); exists && forbid {
		return errFileExists
	}
	u, err := rq.bucket.initiate(uploadRecord{Key: rq.key, ContentType: contentType(rq.r), Headers: headers, Initiated: rq.now})
	if err != nil {
		return err
	}
	return rq.writeXML(struct {
		XMLName      xml.Name `xml:"InitiateMultipartUploadResult"`
		EncodingType string   `xml:"EncodingType,omitempty"`
		Bucket       string
		Key          string
		UploadId     string
	}{EncodingType: rq.encodingType(), Bucket: rq.bucketName, Key: enc(rq.key), UploadId: u.ID})
}

// uploadOf returns the upload named by ?uploadId for the request's key.
func (rq *ossRequest) uploadOf() (*upload, error) {
	u, err := rq.bucket.upload(rq.query.Get("uploadId"), rq.key)
	if err != nil {
		return nil, errNoSuchUpl
	}
	return u, nil
}

func (s *ossService) uploadPart(rq *ossRequest) error {
	r, b := rq.r, rq.bucket
	n, err := strconv.Atoi(rq.query.Get("partNumber"))
	if err != nil || n < 1 || n > maxPartNumber {
		return errInvalidArgument("partNumber must be an integer from 1 to 10000.")
	}
	if !rq.query.Has("uploadId") {
		return errInvalidArgument("UploadPart needs uploadId.")
	}
	u, err := rq.uploadOf()
	if err != nil {
		return err
	}
	if err := checkLength(r, maxPartSize); err != nil {
		return err
	}
	h := md5.New()
	d := &digest{hashes: []hash.Hash{h}}
	check, err := rq.prepareChecks(d, h, true)
	if err != nil {
		return err
	}
	f, blob, err := b.newBlob()
	if err != nil {
		return err
	}
	if err := rq.receive(f, maxPartSize, d, check, true); err != nil {
		b.removeBlobs([]string{blob})
		return err
	}
	p := partRecord{Number: n, Size: d.size, ETag: upperHex(h.Sum(nil)), CRC64: d.crc, Blob: blob, Modified: rq.now}
	if err := b.putPart(u, p); err != nil {
		b.removeBlobs([]string{blob})
		if errors.Is(err, errNoSuchUpload) {
			return errNoSuchUpl
		}
		return err
	}
	wh := rq.w.Header()
	wh.Set("ETag", quoteETag(p.ETag))
	wh.Set("x-oss-hash-crc64ecma", strconv.FormatUint(p.CRC64, 10))
	wh.Set("Content-Length", "0")
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// errMalformedXML refuses a CompleteMultipartUpload document (EC as in the sample error of
// alibabacloud-oss-go-sdk-v2's client_mock_object_multipart_test.go).
var errMalformedXML = &Error{Status: http.StatusBadRequest, Code: "MalformedXML",
	Message: "The XML you provided was not well-formed or did not validate against our published schema.", EC: "0042-00000205"}

func (s *ossService) completeUpload(rq *ossRequest) error {
	enc, err := rq.encoder()
	if err != nil {
		return err
	}
	u, err := rq.uploadOf()
	if err != nil {
		return err
	}
	body, err := s.readSmallBody(rq, maxCompleteBody)
	if err != nil {
		return err
	}
	forbid, err := forbidOverwrite(rq.r)
	if err != nil {
		return err
	}
	var list []completePart
	if strings.EqualFold(rq.r.Header.Get("x-oss-complete-all"), "yes") {
		if len(bytes.TrimSpace(body)) != 0 {
			// EC as in the same sample errors.
			return &Error{Status: http.StatusBadRequest, Code: "InvalidArgument",
				Message: "Should not specify both complete all header and http body.", EC: "0042-00000216"}
		}
		parts, err := rq.bucket.listParts(u)
		if err != nil {
			return errNoSuchUpl
		}
		for _, p := range parts {
			list = append(list, completePart{Number: p.Number, ETag: p.ETag})
		}
	} else {
		var doc struct {
			XMLName xml.Name `xml:"CompleteMultipartUpload"`
			Parts   []struct {
				PartNumber string `xml:"PartNumber"`
				ETag       string `xml:"ETag"`
			} `xml:"Part"`
		}
		if err := xml.Unmarshal(body, &doc); err != nil || len(doc.Parts) > maxPartNumber {
			return errMalformedXML
		}
		for _, p := range doc.Parts {
			n, err := strconv.Atoi(strings.TrimSpace(p.PartNumber))
			if err != nil || n < 1 || n > maxPartNumber || strings.TrimSpace(p.ETag) == "" {
				return errMalformedXML
			}
			list = append(list, completePart{Number: n, ETag: strings.TrimSpace(p.ETag)})
		}
	}
	m, err := rq.bucket.complete(u, list, forbid, rq.now)
	switch {
	case errors.Is(err, errNoSuchUpload):
		return errNoSuchUpl
	case errors.Is(err, errObjectExists):
		return errFileExistsComplete
	case err != nil:
		return err
	}
	rq.w.Header().Set("ETag", quoteETag(m.ETag))
	rq.w.Header().Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	return rq.writeXML(struct {
		XMLName      xml.Name `xml:"CompleteMultipartUploadResult"`
		EncodingType string   `xml:"EncodingType,omitempty"`
		Location     string
		Bucket       string
		Key          string
		ETag         string
	}{EncodingType: rq.encodingType(), Location: location(rq) + enc(rq.key),
		Bucket: rq.bucketName, Key: enc(rq.key), ETag: quoteETag(m.ETag)})
}

// readSmallBody reads a body of at most limit bytes, verified like object bodies.
func (s *ossService) readSmallBody(rq *ossRequest, limit int64) ([]byte, error) {
	tooLarge := &Error{Status: http.StatusBadRequest, Code: "MalformedXML", Message: errMalformedXML.Message}
	if rq.r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(rq.r.Body, limit+1))
	rq.bytesIn += int64(len(body))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "IncompleteBody", Message: "The request body could not be read."}
	}
	if int64(len(body)) > limit {
		return nil, tooLarge
	}
	d := &digest{}
	check, err := rq.prepareChecks(d, nil, false)
	if err != nil {
		return nil, err
	}
	for _, h := range d.hashes {
		h.Write(body)
	}
	if err := check.verify(rq.r, d); err != nil {
		return nil, err
	}
	return body, nil
}

func (s *ossService) abortUpload(rq *ossRequest) error {
	u, err := rq.uploadOf()
	if err != nil {
		return err
	}
	if err := rq.bucket.abort(u); err != nil {
		if errors.Is(err, errNoSuchUpload) {
			return errNoSuchUpl
		}
		return err
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *ossService) listParts(rq *ossRequest) error {
	enc, err := rq.encoder()
	if err != nil {
		return err
	}
	u, err := rq.uploadOf()
	if err != nil {
		return err
	}
	maxParts, err := intParam(rq, "max-parts", 1000, 1, 1000)
	if err != nil {
		return err
	}
	marker, err := intParam(rq, "part-number-marker", 0, 0, maxPartNumber)
	if err != nil {
		return err
	}
	parts, err := rq.bucket.listParts(u)
	if err != nil {
		return errNoSuchUpl
	}
	i, _ := slices.BinarySearchFunc(parts, marker+1, func(p partRecord, n int) int { return p.Number - n })
	parts = parts[i:]
	truncated := len(parts) > maxParts
	if truncated {
		parts = parts[:maxParts]
	}
	type xmlPart struct {
		PartNumber    int
		LastModified  string
		ETag          string
		HashCrc64ecma string
		Size          int64
	}
	res := struct {
		XMLName              xml.Name `xml:"ListPartsResult"`
		EncodingType         string   `xml:"EncodingType,omitempty"`
		Bucket               string
		Key                  string
		UploadId             string
		StorageClass         string
		PartNumberMarker     int
		NextPartNumberMarker int
		MaxParts             int
		IsTruncated          bool
		Parts                []xmlPart `xml:"Part"`
	}{EncodingType: rq.encodingType(), Bucket: rq.bucketName, Key: enc(rq.key), UploadId: u.ID, StorageClass: "Standard",
		PartNumberMarker: marker, MaxParts: maxParts, IsTruncated: truncated}
	for _, p := range parts {
		res.Parts = append(res.Parts, xmlPart{p.Number, p.Modified.UTC().Format(xmlTime), quoteETag(p.ETag), strconv.FormatUint(p.CRC64, 10), p.Size})
		res.NextPartNumberMarker = p.Number
	}
	return rq.writeXML(&res)
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(rq *ossRequest, name string, def, lo, hi int) (int, error) {
	if !rq.query.Has(name) {
		return def, nil
	}
	v, err := strconv.Atoi(rq.query.Get(name))
	if err != nil || v < lo || v > hi {
		return 0, errInvalidArgument(name + " must be an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi) + ".")
	}
	return v, nil
}

// listUploads serves ListMultipartUploads (GET /bucket/?uploads), as documented at
// https://www.alibabacloud.com/help/en/oss/developer-reference/listmultipartuploads: uploads
// in progress ordered by key and upload ID, key-marker and upload-id-marker (ignored without
// key-marker), prefix, delimiter with CommonPrefixes, max-uploads (default and maximum 1000)
// and encoding-type=url, which encodes Delimiter, KeyMarker, Prefix, NextKeyMarker, Key and
// the common prefixes. NextKeyMarker and NextUploadIdMarker name the last entry returned
// whether or not the list is truncated, as in the documented example response.
func (s *ossService) listUploads(rq *ossRequest) error {
	enc, err := rq.encoder()
	if err != nil {
		return err
	}
	q := rq.query
	prefix, delimiter, keyMarker, idMarker := q.Get("prefix"), q.Get("delimiter"), q.Get("key-marker"), q.Get("upload-id-marker")
	for name, v := range map[string]string{"prefix": prefix, "delimiter": delimiter, "key-marker": keyMarker} {
		if len(v) > 1023 {
			return errInvalidArgument(name + " must be at most 1023 bytes.")
		}
	}
	maxUploads, err := intParam(rq, "max-uploads", 1000, 1, 1000)
	if err != nil {
		return err
	}
	if keyMarker == "" {
		idMarker = ""
	}
	page := rq.bucket.listUploads(prefix, delimiter, keyMarker, idMarker, maxUploads)
	type xmlUpload struct {
		Key       string
		UploadId  string
		Initiated string
	}
	res := struct {
		XMLName            xml.Name `xml:"ListMultipartUploadsResult"`
		EncodingType       string   `xml:",omitempty"`
		Bucket             string
		KeyMarker          string
		UploadIdMarker     string
		NextKeyMarker      string
		NextUploadIdMarker string
		Delimiter          string
		Prefix             string
		MaxUploads         int
		IsTruncated        bool
		Uploads            []xmlUpload `xml:"Upload"`
		CommonPrefixes     []xmlPrefix
	}{EncodingType: rq.encodingType(), Bucket: rq.bucketName, KeyMarker: enc(keyMarker), UploadIdMarker: q.Get("upload-id-marker"),
		Delimiter: enc(delimiter), Prefix: enc(prefix), MaxUploads: maxUploads, IsTruncated: page.truncated}
	res.NextKeyMarker, res.NextUploadIdMarker = enc(page.nextKey), page.nextID
	for _, u := range page.uploads {
		res.Uploads = append(res.Uploads, xmlUpload{enc(u.Key), u.ID, u.Initiated.UTC().Format(xmlTime)})
	}
	for _, p := range page.prefixes {
		res.CommonPrefixes = append(res.CommonPrefixes, xmlPrefix{enc(p)})
	}
	return rq.writeXML(&res)
}

// location is the URL prefix of the request's objects, as the request addressed the bucket.
func location(rq *ossRequest) string {
	if strings.HasPrefix(strings.ToLower(rq.r.Host), rq.bucketName+".") {
		return "http://" + rq.r.Host + "/"
	}
	return "http://" + rq.r.Host + "/" + rq.bucketName + "/"
}
