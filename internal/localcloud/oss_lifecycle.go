package localcloud

// Lifecycle rules (PutBucketLifecycle, GetBucketLifecycle, DeleteBucketLifecycle,
// https://www.alibabacloud.com/help/en/oss/developer-reference/putbucketlifecycle) and
// their application on localcloud's clock.
//
// OSS runs the rules once a day at 00:00 UTC (08:00 UTC+8) and finishes within 24 hours;
// an object expires at a run when at least Days*24h have passed since it was last
// modified, or when it was last modified before CreatedBeforeDate
// (https://www.alibabacloud.com/help/en/oss/user-guide/lifecycle-rules-based-on-the-last-modified-time).
// localcloud does each day's run at the first moment its clock (Config.Now) is at or past
// that midnight: before serving the first request after it, and from a background check
// every Config.LifecycleCheck, so that objects expire with or without traffic. A run is
// complete before the request that triggered it is served, so a client that moves the
// clock sees the result at once.

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	lifecycleFile       = "lifecycle.xml"
	maxLifecycleRules   = 1000
	maxLifecycleRuleID  = 255
	maxLifecycleBody    = 2 << 20
	lifecycleDay        = 24 * time.Hour
	lifecycleDateLayout = "2006-01-02T15:04:05.000Z"
	// DefaultLifecycleCheck is how often localcloud looks at its clock for the daily run.
	DefaultLifecycleCheck = time.Minute
)

// lifecycleConfig is a bucket's lifecycle rules, checked, in the order given.
type lifecycleConfig struct {
	rules []lifecycleRule
}

// lifecycleRule is one rule: objects (Expiration) and multipart uploads
// (AbortMultipartUpload) under Prefix, each after Days or before a date. Zero values mean
// the action is absent.
type lifecycleRule struct {
	ID, Prefix            string
	Enabled               bool
	ExpireDays, AbortDays int
	ExpireBefore          time.Time
	AbortBefore           time.Time
}

// The XML of a lifecycle configuration. Elements this server does not implement are
// captured by Other so that they can be refused by name.
type xmlLifecycle struct {
	XMLName xml.Name           `xml:"LifecycleConfiguration"`
	Rules   []xmlLifecycleRule `xml:"Rule"`
	Other   []xmlAny           `xml:",any"`
}

type xmlLifecycleRule struct {
	ID         string            `xml:"ID,omitempty"`
	Prefix     *string           `xml:"Prefix"`
	Status     string            `xml:"Status"`
	Expiration *xmlLifecycleWhen `xml:"Expiration,omitempty"`
	Abort      *xmlLifecycleWhen `xml:"AbortMultipartUpload,omitempty"`
	Other      []xmlAny          `xml:",any"`
}

type xmlLifecycleWhen struct {
	Days              string   `xml:"Days,omitempty"`
	CreatedBeforeDate string   `xml:"CreatedBeforeDate,omitempty"`
	Other             []xmlAny `xml:",any"`
}

type xmlAny struct{ XMLName xml.Name }

func errMalformedLifecycle() *Error {
	return &Error{Status: http.StatusBadRequest, Code: "MalformedXML",
		Message: "The XML you provided was not well-formed or did not validate against our published schema."}
}

func errNotImplementedLifecycle(elem string) *Error {
	return &Error{Status: http.StatusNotImplemented, Code: "NotImplemented",
		Message: "The local OSS does not implement the lifecycle element " + elem + " (it implements Expiration and AbortMultipartUpload by Days or CreatedBeforeDate, by prefix)."}
}

// parseLifecycle checks a PutBucketLifecycle body as OSS does. allowOverlap is the
// x-oss-allow-same-action-overlap header: without it two rules whose prefixes overlap
// may not both have the same action.
func parseLifecycle(body []byte, allowOverlap bool) (*lifecycleConfig, error) {
	var doc xmlLifecycle
	if err := xml.Unmarshal(body, &doc); err != nil {
		return nil, errMalformedLifecycle()
	}
	if len(doc.Other) > 0 {
		return nil, errMalformedLifecycle()
	}
	if len(doc.Rules) == 0 || len(doc.Rules) > maxLifecycleRules {
		return nil, errInvalidArgument(fmt.Sprintf("A lifecycle configuration has 1 to %d rules, not %d.", maxLifecycleRules, len(doc.Rules)))
	}
	c := &lifecycleConfig{rules: make([]lifecycleRule, len(doc.Rules))}
	ids := map[string]bool{}
	for i, xr := range doc.Rules {
		r := &c.rules[i]
		for _, o := range xr.Other {
			switch o.XMLName.Local {
			case "Transition", "Tag", "Filter", "NoncurrentVersionExpiration", "NoncurrentVersionTransition", "AtimeBase":
				return nil, errNotImplementedLifecycle(o.XMLName.Local)
			}
			return nil, errMalformedLifecycle()
		}
		r.ID = xr.ID
		if r.ID == "" {
			r.ID = randomHex(16, false) // OSS makes one up
		}
		if len(r.ID) > maxLifecycleRuleID {
			return nil, errInvalidArgument("A lifecycle rule ID is at most 255 bytes.")
		}
		if ids[r.ID] {
			return nil, errInvalidArgument("The lifecycle rule ID " + strconv.Quote(r.ID) + " is used twice.")
		}
		ids[r.ID] = true
		if xr.Prefix != nil {
			r.Prefix = *xr.Prefix
		}
		switch xr.Status {
		case "Enabled":
			r.Enabled = true
		case "Disabled":
		default:
			return nil, errInvalidArgument("A lifecycle rule's Status is Enabled or Disabled, not " + strconv.Quote(xr.Status) + ".")
		}
		if xr.Expiration == nil && xr.Abort == nil {
			return nil, errInvalidArgument("The lifecycle rule " + strconv.Quote(r.ID) + " has no action (Expiration or AbortMultipartUpload).")
		}
		var err error
		if xr.Expiration != nil {
			if r.ExpireDays, r.ExpireBefore, err = parseLifecycleWhen(xr.Expiration, "Expiration", true); err != nil {
				return nil, err
			}
		}
		if xr.Abort != nil {
			if r.AbortDays, r.AbortBefore, err = parseLifecycleWhen(xr.Abort, "AbortMultipartUpload", false); err != nil {
				return nil, err
			}
		}
	}
	if !allowOverlap {
		for i := range c.rules {
			for j := range i {
				a, b := &c.rules[i], &c.rules[j]
				if !strings.HasPrefix(a.Prefix, b.Prefix) && !strings.HasPrefix(b.Prefix, a.Prefix) {
					continue
				}
				// The message is the one OSS gives
				// (aliyun-oss-python-sdk tests, test_lifecycle_overlap_exception).
				if a.expires() && b.expires() {
					return nil, errInvalidArgument("Overlap for same action type Expiration")
				}
				if a.aborts() && b.aborts() {
					return nil, errInvalidArgument("Overlap for same action type AbortMultipartUpload")
				}
			}
		}
	}
	return c, nil
}

// parseLifecycleWhen reads exactly one of Days (a positive integer) and CreatedBeforeDate
// (midnight UTC in ISO 8601).
func parseLifecycleWhen(w *xmlLifecycleWhen, elem string, expiration bool) (int, time.Time, error) {
	for _, o := range w.Other {
		if o.XMLName.Local == "Date" || o.XMLName.Local == "ExpiredObjectDeleteMarker" && expiration {
			return 0, time.Time{}, errNotImplementedLifecycle(elem + "/" + o.XMLName.Local)
		}
		return 0, time.Time{}, errMalformedLifecycle()
	}
	days, date := strings.TrimSpace(w.Days), strings.TrimSpace(w.CreatedBeforeDate)
	if (days == "") == (date == "") {
		return 0, time.Time{}, errInvalidArgument(elem + " needs exactly one of Days and CreatedBeforeDate.")
	}
	if days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 1<<20 {
			return 0, time.Time{}, errInvalidArgument(elem + "/Days must be a positive integer, not " + strconv.Quote(days) + ".")
		}
		return n, time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, date)
	if err != nil || !t.Equal(t.UTC().Truncate(lifecycleDay)) {
		return 0, time.Time{}, errInvalidArgument(elem + "/CreatedBeforeDate must be a midnight UTC in ISO 8601, such as 2017-01-01T00:00:00.000Z, not " + strconv.Quote(date) + ".")
	}
	return 0, t.UTC(), nil
}

func (r *lifecycleRule) expires() bool { return r.ExpireDays > 0 || !r.ExpireBefore.IsZero() }
func (r *lifecycleRule) aborts() bool  { return r.AbortDays > 0 || !r.AbortBefore.IsZero() }

// objectExpired reports whether the daily run at run deletes an object last modified at
// modified.
func (r *lifecycleRule) objectExpired(modified, run time.Time) bool {
	if r.ExpireDays > 0 {
		return !run.Before(modified.Add(time.Duration(r.ExpireDays) * lifecycleDay))
	}
	return !r.ExpireBefore.IsZero() && modified.Before(r.ExpireBefore)
}

// uploadExpired reports whether the daily run at run aborts an upload initiated at started.
func (r *lifecycleRule) uploadExpired(started, run time.Time) bool {
	if r.AbortDays > 0 {
		return !run.Before(started.Add(time.Duration(r.AbortDays) * lifecycleDay))
	}
	return !r.AbortBefore.IsZero() && started.Before(r.AbortBefore)
}

// marshal returns the configuration as GetBucketLifecycle answers it (and as it is stored).
func (c *lifecycleConfig) marshal() ([]byte, error) {
	doc := xmlLifecycle{Rules: make([]xmlLifecycleRule, len(c.rules))}
	when := func(days int, before time.Time) *xmlLifecycleWhen {
		switch {
		case days > 0:
			return &xmlLifecycleWhen{Days: strconv.Itoa(days)}
		case !before.IsZero():
			return &xmlLifecycleWhen{CreatedBeforeDate: before.Format(lifecycleDateLayout)}
		}
		return nil
	}
	for i, r := range c.rules {
		prefix := r.Prefix
		status := "Disabled"
		if r.Enabled {
			status = "Enabled"
		}
		doc.Rules[i] = xmlLifecycleRule{ID: r.ID, Prefix: &prefix, Status: status,
			Expiration: when(r.ExpireDays, r.ExpireBefore), Abort: when(r.AbortDays, r.AbortBefore)}
	}
	b, err := xml.Marshal(&doc)
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), b...), nil
}

// loadLifecycle reads the stored configuration, if any.
func (c *bucketConfig) loadLifecycle() error {
	text, err := os.ReadFile(filepath.Join(c.dir, lifecycleFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lc, err := parseLifecycle(text, true)
	if err != nil {
		return fmt.Errorf("stored lifecycle configuration: %w", err)
	}
	c.lifecycle.Store(lc)
	return nil
}

func (s *ossService) putBucketLifecycle(rq *ossRequest) error {
	body, err := s.readSmallBody(rq, maxLifecycleBody)
	if err != nil {
		return err
	}
	lc, err := parseLifecycle(body, strings.EqualFold(rq.r.Header.Get("x-oss-allow-same-action-overlap"), "true"))
	if err != nil {
		return err
	}
	text, err := lc.marshal()
	if err != nil {
		return err
	}
	c := s.configs[rq.bucketName]
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.save(lifecycleFile, text); err != nil {
		return err
	}
	c.lifecycle.Store(lc)
	rq.w.Header().Set("Content-Length", "0")
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *ossService) getBucketLifecycle(rq *ossRequest) error {
	lc := s.configs[rq.bucketName].lifecycle.Load()
	if lc == nil {
		return &Error{Status: http.StatusNotFound, Code: "NoSuchLifecycle", Message: "No Row found in Lifecycle Table."}
	}
	text, err := lc.marshal()
	if err != nil {
		return err
	}
	h := rq.w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(text)))
	rq.w.WriteHeader(http.StatusOK)
	_, _ = rq.w.Write(text)
	return nil
}

// deleteBucketLifecycle removes the rules; 204 whether or not there were any.
func (s *ossService) deleteBucketLifecycle(rq *ossRequest) error {
	c := s.configs[rq.bucketName]
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.save(lifecycleFile, nil); err != nil {
		return err
	}
	c.lifecycle.Store(nil)
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// lifecycleRunner does each day's lifecycle run once.
type lifecycleRunner struct {
	s    *ossService
	mu   sync.Mutex   // held during a run
	last atomic.Int64 // Unix time of the last run done
	stop chan struct{}
	done chan struct{}
	// ran, if set (tests), is called after each run with its time.
	ran func(time.Time)
}

// newLifecycleRunner starts the background check every interval (<= 0: none).
func newLifecycleRunner(s *ossService, interval time.Duration, ran func(time.Time)) *lifecycleRunner {
	l := &lifecycleRunner{s: s, stop: make(chan struct{}), done: make(chan struct{}), ran: ran}
	if interval <= 0 {
		close(l.done)
		return l
	}
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.runDue(s.cfg.Now())
			}
		}
	}()
	return l
}

// Close stops the background check and waits for a run in progress.
func (l *lifecycleRunner) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// runDue does the run of the latest midnight UTC at or before now, unless it is done.
func (l *lifecycleRunner) runDue(now time.Time) {
	run := now.UTC().Truncate(lifecycleDay)
	if run.Unix() <= l.last.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if run.Unix() <= l.last.Load() {
		return
	}
	for name, b := range l.s.store.buckets {
		if lc := l.s.configs[name].lifecycle.Load(); lc != nil {
			l.apply(b, lc, run)
		}
	}
	l.last.Store(run.Unix())
	if l.ran != nil {
		l.ran(run)
	}
}

// apply deletes the bucket's expired objects and aborts its expired uploads.
func (l *lifecycleRunner) apply(b *bucket, lc *lifecycleConfig, run time.Time) {
	var rules []*lifecycleRule
	for i := range lc.rules {
		if lc.rules[i].Enabled {
			rules = append(rules, &lc.rules[i])
		}
	}
	expired := func(key string, m *objectMeta) bool {
		return slices.ContainsFunc(rules, func(r *lifecycleRule) bool {
			return r.expires() && strings.HasPrefix(key, r.Prefix) && r.objectExpired(m.Modified, run)
		})
	}
	b.mu.RLock()
	var keys []string
	for _, k := range b.keys {
		if expired(k, &b.objects[k].objectMeta) {
			keys = append(keys, k)
		}
	}
	b.mu.RUnlock()
	deleted := 0
	for _, k := range keys {
		unlock := b.locks.lock(k)
		if m, ok := b.get(k); ok && expired(k, m) { // not rewritten since
			if err := b.commit(k, nil, false); err != nil {
				l.s.log.Error().Err(err).Str("bucket", b.name).Str("key", k).Msg("lifecycle: deleting an expired object")
			} else {
				deleted++
			}
		}
		unlock()
	}

	b.upMu.Lock()
	var uploads []*upload
	for _, u := range b.uploads {
		if slices.ContainsFunc(rules, func(r *lifecycleRule) bool {
			return r.aborts() && strings.HasPrefix(u.Key, r.Prefix) && r.uploadExpired(u.Initiated, run)
		}) {
			uploads = append(uploads, u)
		}
	}
	b.upMu.Unlock()
	aborted := 0
	for _, u := range uploads {
		switch err := b.abort(u); {
		case err == nil:
			aborted++
		case !errors.Is(err, errNoSuchUpload): // else completed or aborted meanwhile
			l.s.log.Error().Err(err).Str("bucket", b.name).Str("uploadId", u.ID).Msg("lifecycle: aborting an expired upload")
		}
	}
	l.s.log.Info().Str("bucket", b.name).Time("run", run).Int("objectsDeleted", deleted).Int("uploadsAborted", aborted).Msg("lifecycle run")
}
