package localcloud

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/clipgate/clipgate/internal/policyeval"
)

// bucketConfig is a bucket's configuration that OSS keeps besides its objects: the bucket
// policy and the lifecycle rules. Each lives in its own file under
// {DataDir}/oss/{bucket}/config/, replaced atomically, and in memory behind an atomic
// pointer so that requests read it without locking.
type bucketConfig struct {
	dir    string
	tmpDir string     // the bucket's tmp/, for atomic replacement
	mu     sync.Mutex // serializes writers

	policy    atomic.Pointer[bucketPolicy]    // nil: no bucket policy
	lifecycle atomic.Pointer[lifecycleConfig] // nil: no lifecycle rules
}

// bucketPolicy is a bucket policy as stored: its text, returned verbatim by
// GetBucketPolicy, and its parsed form.
type bucketPolicy struct {
	text string
	doc  *policyeval.Document
}

const policyFile = "policy.json" // lifecycleFile is in oss_lifecycle.go

// loadBucketConfigs opens the configuration of every bucket of st.
func loadBucketConfigs(st *store) (map[string]*bucketConfig, error) {
	out := make(map[string]*bucketConfig, len(st.buckets))
	for name, b := range st.buckets {
		c := &bucketConfig{dir: filepath.Join(st.root, name, "config"), tmpDir: b.tmpDir}
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, fmt.Errorf("localcloud: bucket %s: %w", name, err)
		}
		text, err := os.ReadFile(filepath.Join(c.dir, policyFile))
		switch {
		case err == nil:
			doc, err := policyeval.ParseBucketPolicy(text)
			if err != nil {
				return nil, fmt.Errorf("localcloud: bucket %s: stored policy: %w", name, err)
			}
			c.policy.Store(&bucketPolicy{text: string(text), doc: doc})
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("localcloud: bucket %s: %w", name, err)
		}
		if err := c.loadLifecycle(); err != nil {
			return nil, fmt.Errorf("localcloud: bucket %s: %w", name, err)
		}
		out[name] = c
	}
	return out, nil
}

// save replaces (data != nil) or removes (data == nil) one configuration file durably.
func (c *bucketConfig) save(name string, data []byte) error {
	path := filepath.Join(c.dir, name)
	if data != nil {
		return writeFileAtomic(c.tmpDir, path, data)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(c.dir)
}

// routeBucketConfig routes the bucket configuration operations (?policy, ?lifecycle).
func routeBucketConfig(rq *ossRequest) (opSpec, bool) {
	if rq.key != "" {
		return opSpec{}, false
	}
	q, m := rq.query, rq.r.Method
	switch {
	case q.Has("policy"):
		switch m {
		case http.MethodPut:
			return opSpec{"PutBucketPolicy", "oss:PutBucketPolicy", (*ossService).putBucketPolicy}, true
		case http.MethodGet:
			return opSpec{"GetBucketPolicy", "oss:GetBucketPolicy", (*ossService).getBucketPolicy}, true
		case http.MethodDelete:
			return opSpec{"DeleteBucketPolicy", "oss:DeleteBucketPolicy", (*ossService).deleteBucketPolicy}, true
		}
	case q.Has("lifecycle"):
		switch m {
		case http.MethodPut:
			return opSpec{"PutBucketLifecycle", "oss:PutBucketLifecycle", (*ossService).putBucketLifecycle}, true
		case http.MethodGet:
			return opSpec{"GetBucketLifecycle", "oss:GetBucketLifecycle", (*ossService).getBucketLifecycle}, true
		case http.MethodDelete:
			return opSpec{"DeleteBucketLifecycle", "oss:DeleteBucketLifecycle", (*ossService).deleteBucketLifecycle}, true
		}
	}
	return opSpec{}, false
}
