package localcloud

import (
	"encoding/base64"
	"encoding/xml"
	"slices"
)

type xmlOwner struct {
	ID          string
	DisplayName string
}

type xmlObject struct {
	Key          string
	LastModified string
	ETag         string
	Type         string
	Size         int64
	StorageClass string
	Owner        *xmlOwner `xml:",omitempty"`
}

type xmlPrefix struct {
	Prefix string
}

// listArgs are the listing parameters common to ListObjects and ListObjectsV2.
type listArgs struct {
	prefix, delimiter string
	maxKeys           int
	enc               func(string) string
}

func (rq *ossRequest) listArgs() (*listArgs, error) {
	enc, err := rq.encoder()
	if err != nil {
		return nil, err
	}
	a := &listArgs{prefix: rq.query.Get("prefix"), delimiter: rq.query.Get("delimiter"), enc: enc}
	if len(a.prefix) > 1023 {
		return nil, errInvalidArgument("prefix must be at most 1023 bytes.")
	}
	if len(a.delimiter) > 1023 {
		return nil, errInvalidArgument("delimiter must be at most 1023 bytes.")
	}
	if a.maxKeys, err = intParam(rq, "max-keys", 100, 1, 1000); err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ossService) contents(page *listPage, a *listArgs, owner bool) ([]xmlObject, []xmlPrefix) {
	objs := make([]xmlObject, len(page.objects))
	for i := range page.objects {
		m := &page.objects[i]
		objs[i] = xmlObject{Key: a.enc(m.Key), LastModified: m.Modified.UTC().Format(xmlTime),
			ETag: quoteETag(m.ETag), Type: m.Type, Size: m.Size, StorageClass: "Standard"}
		if owner {
			objs[i].Owner = &xmlOwner{s.cfg.AccountID, s.cfg.AccountID}
		}
	}
	prefixes := make([]xmlPrefix, len(page.prefixes))
	for i, p := range page.prefixes {
		prefixes[i] = xmlPrefix{a.enc(p)}
	}
	return objs, prefixes
}

// listObjectsV2 serves GET /bucket/?list-type=2. The continuation token is the position of
// the last entry returned (a key or a common prefix), base64url-encoded.
func (s *ossService) listObjectsV2(rq *ossRequest) error {
	a, err := rq.listArgs()
	if err != nil {
		return err
	}
	startAfter := rq.query.Get("start-after")
	if len(startAfter) > 1023 {
		return errInvalidArgument("start-after must be at most 1023 bytes.")
	}
	after := startAfter
	token := rq.query.Get("continuation-token")
	if rq.query.Has("continuation-token") {
		pos, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(pos) == 0 || len(pos) > 1023 {
			return errInvalidArgument("The continuation token is invalid.")
		}
		after = max(after, string(pos))
	}
	page := rq.bucket.list(a.prefix, a.delimiter, after, a.maxKeys)
	objs, prefixes := s.contents(&page, a, rq.query.Get("fetch-owner") == "true")
	res := struct {
		XMLName               xml.Name `xml:"ListBucketResult"`
		Name                  string
		Prefix                string
		StartAfter            string `xml:",omitempty"`
		ContinuationToken     string `xml:",omitempty"`
		MaxKeys               int
		Delimiter             string
		EncodingType          string `xml:",omitempty"`
		IsTruncated           bool
		NextContinuationToken string `xml:",omitempty"`
		KeyCount              int
		Contents              []xmlObject
		CommonPrefixes        []xmlPrefix
	}{Name: rq.bucketName, Prefix: a.enc(a.prefix), StartAfter: a.enc(startAfter), ContinuationToken: token,
		MaxKeys: a.maxKeys, Delimiter: a.enc(a.delimiter), EncodingType: rq.encodingType(),
		IsTruncated: page.truncated, KeyCount: len(objs) + len(prefixes), Contents: objs, CommonPrefixes: prefixes}
	if page.truncated {
		res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(page.last))
	}
	return rq.writeXML(&res)
}

// listObjectsV1 serves GET /bucket/ (ListObjects with marker).
func (s *ossService) listObjectsV1(rq *ossRequest) error {
	a, err := rq.listArgs()
	if err != nil {
		return err
	}
	marker := rq.query.Get("marker")
	if len(marker) > 1023 {
		return errInvalidArgument("marker must be at most 1023 bytes.")
	}
	page := rq.bucket.list(a.prefix, a.delimiter, marker, a.maxKeys)
	objs, prefixes := s.contents(&page, a, true)
	res := struct {
		XMLName        xml.Name `xml:"ListBucketResult"`
		Name           string
		Prefix         string
		Marker         string
		MaxKeys        int
		Delimiter      string
		EncodingType   string `xml:",omitempty"`
		IsTruncated    bool
		NextMarker     string `xml:",omitempty"`
		Contents       []xmlObject
		CommonPrefixes []xmlPrefix
	}{Name: rq.bucketName, Prefix: a.enc(a.prefix), Marker: a.enc(marker), MaxKeys: a.maxKeys,
		Delimiter: a.enc(a.delimiter), EncodingType: rq.encodingType(), IsTruncated: page.truncated,
		Contents: objs, CommonPrefixes: prefixes}
	if page.truncated {
		res.NextMarker = a.enc(page.last)
	}
	return rq.writeXML(&res)
}

// listBuckets serves GET / with the configured buckets.
func (s *ossService) listBuckets(rq *ossRequest) error {
	type xmlBucket struct {
		Name             string
		CreationDate     string
		Location         string
		Region           string
		ExtranetEndpoint string
		IntranetEndpoint string
		StorageClass     string
	}
	names := make([]string, 0, len(s.store.buckets))
	for n := range s.store.buckets {
		names = append(names, n)
	}
	slices.Sort(names)
	res := struct {
		XMLName xml.Name    `xml:"ListAllMyBucketsResult"`
		Owner   xmlOwner    `xml:"Owner"`
		Buckets []xmlBucket `xml:"Buckets>Bucket"`
	}{Owner: xmlOwner{s.cfg.AccountID, s.cfg.AccountID}}
	for _, n := range names {
		res.Buckets = append(res.Buckets, xmlBucket{Name: n, CreationDate: "1970-01-01T00:00:00.000Z",
			Location: "oss-" + s.cfg.Region, Region: s.cfg.Region, ExtranetEndpoint: rq.r.Host,
			IntranetEndpoint: rq.r.Host, StorageClass: "Standard"})
	}
	return rq.writeXML(&res)
}
