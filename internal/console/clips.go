package console

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/sync/errgroup"
)

// Retention bounds.
const (
	// MaxRetentionDays bounds the age a retention run takes (100 years).
	MaxRetentionDays = 36500
	// MaxRetentionDeletes bounds the objects one retention run deletes; the result says
	// whether more are left (run it again).
	MaxRetentionDeletes = 100_000
	// retentionBatch is the keys per DeleteObjects call (OSS allows 1000).
	retentionBatch = 1000
	// singleDeleteConcurrency bounds DeleteObject calls in flight when the OSS does not
	// implement DeleteObjects (the local cloud).
	singleDeleteConcurrency = 8
	// maxKeyLen is OSS's limit on object names.
	maxKeyLen = 1023
)

// ErrInvalid is wrapped by the errors of operator input that the console refuses.
var ErrInvalid = errors.New("invalid request")

// ErrOSS is wrapped by OSS failures of console operations.
var ErrOSS = errors.New("OSS request failed")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// checkKey checks an object key given by the operator.
func (c *Console) checkKey(key string) error {
	switch {
	case key == "":
		return invalidf("a clip key is required")
	case len(key) > maxKeyLen || !utf8.ValidString(key) || strings.ContainsRune(key, 0):
		return invalidf("not a valid object key")
	case !strings.HasPrefix(key, c.cfg.Prefix):
		return invalidf("key %q is not under the prefix %q", key, c.cfg.Prefix)
	}
	return nil
}

// SignedURL returns a presigned GET URL for the clip (V4 if SignBucket signs with V4),
// valid for URLExpiry, and its expiry time.
func (c *Console) SignedURL(key string) (string, time.Time, error) {
	expires := time.Now().Add(c.cfg.URLExpiry)
	u, err := c.cfg.SignBucket.SignURL(key, oss.HTTPGet, int64(c.cfg.URLExpiry/time.Second))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: signing: %v", ErrOSS, err)
	}
	return u, expires, nil
}

// DownloadURL is SignedURL for a download: OSS answers it with Content-Disposition
// attachment and the key's base name as the file name (response-content-disposition),
// so that the browser saves the clip rather than showing it.
func (c *Console) DownloadURL(key string) (string, time.Time, error) {
	expires := time.Now().Add(c.cfg.URLExpiry)
	disposition := mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(key)})
	if disposition == "" { // a name FormatMediaType cannot encode
		disposition = "attachment"
	}
	u, err := c.cfg.SignBucket.SignURL(key, oss.HTTPGet, int64(c.cfg.URLExpiry/time.Second), oss.ResponseContentDisposition(disposition))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: signing: %v", ErrOSS, err)
	}
	return u, expires, nil
}

// DeleteClip deletes an indexed clip: the object and its poster (DeleteObject, which
// succeeds for a missing object too), then the row. ErrNotFound if the clip is not
// indexed. Deleting the objects first means a failure leaves at worst a row without an
// object, which a second delete removes; the other order could leave an object that the
// reconciler would index again.
func (c *Console) DeleteClip(ctx context.Context, key string) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	clip, err := c.store.Clip(ctx, key)
	if err != nil {
		return err
	}
	if clip.Poster {
		if err := c.cfg.Bucket.DeleteObject(key+PosterSuffix, oss.WithContext(ctx)); err != nil {
			return fmt.Errorf("%w: deleting the poster of %s: %v", ErrOSS, key, err)
		}
	}
	if err := c.cfg.Bucket.DeleteObject(key, oss.WithContext(ctx)); err != nil {
		return fmt.Errorf("%w: deleting %s: %v", ErrOSS, key, err)
	}
	if _, err := c.store.DeleteClips(ctx, []string{key}); err != nil {
		return err
	}
	c.log.Info().Str("key", key).Msg("clip deleted")
	return nil
}

// RetentionResult is what a retention run deleted.
type RetentionResult struct {
	// Objects counts objects deleted from OSS, Rows clips removed from the index.
	Objects int `json:"objects"`
	Rows    int `json:"rows"`
	// More reports that the run stopped at MaxRetentionDeletes with more to delete.
	More bool `json:"more"`
	// Before is the cutoff: clips uploaded before it were deleted.
	Before time.Time `json:"before"`
}

// CheckRetentionPrefix returns the prefix a retention run uses: "" means the global
// prefix; anything else must lie under it, in the characters of object keys that
// devices use, without "." or ".." segments.
func (c *Console) CheckRetentionPrefix(prefix string) (string, error) {
	if prefix == "" {
		return c.cfg.Prefix, nil
	}
	if !strings.HasPrefix(prefix, c.cfg.Prefix) {
		return "", invalidf("prefix %q is not under the clips prefix %q", prefix, c.cfg.Prefix)
	}
	if len(prefix) > maxKeyLen {
		return "", invalidf("prefix is longer than %d bytes", maxKeyLen)
	}
	for i := 0; i < len(prefix); i++ {
		b := prefix[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-' || b == '/') {
			return "", invalidf("prefix %q: only letters, digits and . _ - / are allowed", prefix)
		}
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return "", invalidf("prefix %q has a %q segment", prefix, seg)
		}
	}
	return prefix, nil
}

// Retention deletes the clips under prefix uploaded more than days days ago: first the
// indexed ones (object and poster, then rows, a batch at a time), then objects under the
// prefix that the index does not have (listing the bucket: posters and clips it never
// had), so that nothing old is left in either. It stops after MaxRetentionDeletes
// objects and reports whether more are left.
func (c *Console) Retention(ctx context.Context, prefix string, days int) (RetentionResult, error) {
	prefix, err := c.CheckRetentionPrefix(prefix)
	if err != nil {
		return RetentionResult{}, err
	}
	if days < 1 || days > MaxRetentionDays {
		return RetentionResult{}, invalidf("days %d: want 1 to %d", days, MaxRetentionDays)
	}
	res := RetentionResult{Before: c.cfg.Now().Add(-time.Duration(days) * 24 * time.Hour).UTC()}
	log := c.log.With().Str("prefix", prefix).Time("before", res.Before).Logger()
	drop := func(keys, posters []string) error {
		if err := c.deleteObjects(ctx, append(keys, posters...)); err != nil {
			return err
		}
		res.Objects += len(keys) + len(posters)
		n, err := c.store.DeleteClips(ctx, keys)
		res.Rows += n
		return err
	}
	// The index first, half a batch of clips at a time (each may have a poster).
	after := ""
	for res.Objects < MaxRetentionDeletes {
		refs, err := c.store.ExpiredClips(ctx, prefix, res.Before, after, max(1, min(retentionBatch/2, (MaxRetentionDeletes-res.Objects)/2)))
		if err != nil {
			return res, err
		}
		if len(refs) == 0 {
			break
		}
		keys, posters := make([]string, 0, len(refs)), []string{}
		for _, r := range refs {
			keys = append(keys, r.Key)
			if r.Poster {
				posters = append(posters, r.Key+PosterSuffix)
			}
		}
		if err := drop(keys, posters); err != nil {
			return res, err
		}
		after = refs[len(refs)-1].Key
	}
	// Then the bucket.
	token := ""
	for res.Objects < MaxRetentionDeletes {
		opts := []oss.Option{oss.Prefix(prefix), oss.MaxKeys(retentionBatch), oss.WithContext(ctx)}
		if token != "" {
			opts = append(opts, oss.ContinuationToken(token))
		}
		page, err := c.cfg.Bucket.ListObjectsV2(opts...)
		if err != nil {
			return res, fmt.Errorf("%w: listing %s: %v", ErrOSS, prefix, err)
		}
		var old []string
		for _, o := range page.Objects {
			if o.LastModified.Before(res.Before) && len(old) < MaxRetentionDeletes-res.Objects {
				old = append(old, o.Key)
			}
		}
		if len(old) > 0 {
			if err := drop(old, nil); err != nil {
				return res, err
			}
		}
		if !page.IsTruncated || page.NextContinuationToken == "" {
			break
		}
		token = page.NextContinuationToken
	}
	res.More = res.Objects >= MaxRetentionDeletes
	log.Info().Int("objects", res.Objects).Int("rows", res.Rows).Bool("more", res.More).Msg("retention run")
	return res, nil
}

// deleteObjects deletes keys (at most retentionBatch) with one DeleteObjects call, or,
// where the OSS does not implement it (the local cloud answers 501), with DeleteObject
// calls a few at a time. Deleting a missing object succeeds.
func (c *Console) deleteObjects(ctx context.Context, keys []string) error {
	if c.multiDelete.Load() {
		_, err := c.cfg.Bucket.DeleteObjects(keys, oss.DeleteObjectsQuiet(true), oss.WithContext(ctx))
		var se oss.ServiceError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &se) && (se.StatusCode == http.StatusNotImplemented || se.Code == "NotImplemented"):
			c.multiDelete.Store(false)
			c.log.Info().Msg("the OSS does not implement DeleteObjects; deleting objects one by one")
		default:
			return fmt.Errorf("%w: DeleteObjects: %v", ErrOSS, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(singleDeleteConcurrency)
	for _, k := range keys {
		g.Go(func() error {
			if err := c.cfg.Bucket.DeleteObject(k, oss.WithContext(gctx)); err != nil {
				return fmt.Errorf("%w: deleting %s: %v", ErrOSS, k, err)
			}
			return nil
		})
	}
	return g.Wait()
}
