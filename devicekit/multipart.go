package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate"
	"golang.org/x/sync/errgroup"
)

// Resumable multipart uploads, signed with the kit's clock.
//
// The SDK's UploadFile cannot carry a Date header to its parts (see ossretry.go), so the kit
// drives the SDK's InitiateMultipartUpload, UploadPartFromFile and CompleteMultipartUpload
// itself, each request with a fresh Date. Progress is checkpointed in
// StateDir/checkpoints/<eventID>.cp (written atomically and synced after every part), so an
// Upload of the same clip after a failure, a cancellation or a crash sends only the parts
// that are not recorded there. A part whose response was lost is sent again (OSS keeps the
// last copy of a part number). The kit's own loop also lets CompleteMultipartUpload carry
// x-oss-forbid-overwrite, look at the key first (HeadObject), and abort every upload it
// gives up (AbortMultipartUpload).

// maxParts is the most parts OSS accepts in one multipart upload.
const maxParts = 10000

// checkpointVersion marks the kit's checkpoint format (the SDK's own files are not read).
const checkpointVersion = 1

// mpCheckpoint is the state of one multipart upload.
type mpCheckpoint struct {
	V        int      `json:"v"`
	Bucket   string   `json:"bucket"`
	Key      string   `json:"key"`
	UploadID string   `json:"uploadId"`
	Size     int64    `json:"size"`
	ModTime  int64    `json:"mtime"` // UnixNano of the file's modification time
	PartSize int64    `json:"partSize"`
	Parts    []mpPart `json:"parts"` // uploaded parts, in completion order
	// Completing is set before CompleteMultipartUpload is sent: the upload may be
	// complete, and a resume looks at the key first.
	Completing bool `json:"completing,omitempty"`
}

type mpPart struct {
	Number int    `json:"n"`
	ETag   string `json:"etag"`
	// CRC is the part's CRC-64 in decimal, as OSS reported it (and the SDK checked against
	// the bytes it sent); empty when OSS did not report it or an older kit wrote the
	// checkpoint: the part is then read again to compute the clip's CRC-64.
	CRC string `json:"crc,omitempty"`
}

// partsCRC returns the CRC-64 of the whole clip, combined from those of its parts (parts
// holds every part of the upload), reading the parts that have none recorded.
func partsCRC(p *prepared, parts []mpPart, partSize int64) (uint64, error) {
	crcs := make(map[int]string, len(parts))
	for _, part := range parts {
		crcs[part.Number] = part.CRC
	}
	nparts := int((p.size + partSize - 1) / partSize)
	var crc uint64
	for n := 1; n <= nparts; n++ {
		off := int64(n-1) * partSize
		size := min(partSize, p.size-off)
		c, err := strconv.ParseUint(crcs[n], 10, 64)
		if err != nil {
			h := crc64.New(crcTable)
			if _, err := io.Copy(h, io.NewSectionReader(p.file, off, size)); err != nil {
				return 0, fmt.Errorf("devicekit: reading %s: %w", p.Path, err)
			}
			c = h.Sum64()
		}
		crc = oss.CRC64Combine(crc, c, uint64(size))
	}
	return crc, nil
}

// partSizeFor returns the part size for a file of size bytes: the configured one, grown
// if the file would need more than maxParts parts.
func partSizeFor(size, configured int64) int64 {
	if least := (size + maxParts - 1) / maxParts; least > configured {
		return least
	}
	return configured
}

// loadCheckpoint returns the checkpoint at path if it belongs to this upload of p to key;
// a checkpoint that does not (another key, another file version, another part size,
// garbage) is removed, and the multipart upload it names is aborted.
func (k *Kit) loadCheckpoint(ctx context.Context, bucket *oss.Bucket, path, key string, p *prepared, partSize int64) *mpCheckpoint {
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			k.log.Warn().Err(err).Str("path", path).Msg("unreadable multipart checkpoint; starting over")
		}
		return nil
	}
	var cp mpCheckpoint
	nparts := int((p.size + partSize - 1) / partSize)
	parsed := json.Unmarshal(b, &cp) == nil && cp.V == checkpointVersion
	valid := parsed && cp.Bucket == bucket.BucketName &&
		cp.Key == key && cp.UploadID != "" && cp.Size == p.size && cp.ModTime == p.mtime.UnixNano() &&
		cp.PartSize == partSize && len(cp.Parts) <= nparts
	seen := make(map[int]bool, len(cp.Parts))
	for _, part := range cp.Parts {
		if !valid {
			break
		}
		valid = part.Number >= 1 && part.Number <= nparts && part.ETag != "" && !seen[part.Number] && validPartCRC(part.CRC)
		seen[part.Number] = true
	}
	if !valid {
		k.log.Warn().Str("path", path).Msg("multipart checkpoint does not match the clip; starting over")
		if parsed {
			k.dropUpload(ctx, bucket, &cp, path)
		}
		os.Remove(path)
		return nil
	}
	return &cp
}

// validPartCRC reports whether s is a part's CRC-64 as a checkpoint records it.
func validPartCRC(s string) bool {
	if s == "" {
		return true
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func saveCheckpoint(path string, cp *mpCheckpoint) error {
	b, err := json.Marshal(cp)
	if err == nil {
		err = writeFileAtomic(path, b)
	}
	if err != nil {
		return fmt.Errorf("devicekit: multipart checkpoint: %w", err)
	}
	return nil
}

// dropUpload gives up the multipart upload of cp (if any): it is aborted (when the
// checkpoint names one in this bucket) and the checkpoint at path removed.
func (k *Kit) dropUpload(ctx context.Context, bucket *oss.Bucket, cp *mpCheckpoint, path string) {
	if cp != nil && cp.UploadID != "" && cp.Key != "" {
		if cp.Bucket == bucket.BucketName {
			k.abortUpload(ctx, bucket, cp.Key, cp.UploadID) // a failure is logged; the lifecycle rule is the backstop
		} else {
			k.log.Warn().Str("bucket", cp.Bucket).Str("upload", cp.UploadID).Msg("multipart upload in another bucket left to its lifecycle rule")
		}
	}
	os.Remove(path)
}

// multipart uploads p to key in parts, resuming from the checkpoint at cpPath, and returns
// the CompleteMultipartUpload response header (with the object's CRC-64), or the
// HeadObject header when the key holds the clip already.
//
// A new upload is initiated with x-oss-forbid-overwrite, so a key another recording holds
// is found before any part is sent (errKeyTaken, after HeadObject tells it from this clip).
// A checkpoint marked completing (CompleteMultipartUpload may have been sent: a kill
// before the checkpoint was removed, an answer lost) is checked first: if the key holds
// the clip, nothing is sent again. Every upload it gives up is aborted.
func (k *Kit) multipart(ctx context.Context, bucket *oss.Bucket, info clipgate.OSSInfo, key string, p *prepared, cpPath string, prog *progress) (http.Header, error) {
	partSize := partSizeFor(p.size, k.cfg.PartSize)
	cp := k.loadCheckpoint(ctx, bucket, cpPath, key, p, partSize)
	if cp != nil && cp.Completing {
		if len(cp.Parts) == int((p.size+partSize-1)/partSize) && !p.hasCRC {
			crc, err := partsCRC(p, cp.Parts, partSize)
			if err != nil {
				return nil, err
			}
			p.setCRC(crc)
		}
		h, err := k.holds(ctx, info, key, p)
		switch {
		case h != nil:
			k.log.Info().Str("key", key).Msg("the upload had completed (same size and CRC-64); nothing sent again")
			k.dropUpload(ctx, bucket, cp, cpPath)
			return h, nil
		case errors.Is(err, errKeyTaken):
			k.dropUpload(ctx, bucket, cp, cpPath)
			return nil, err
		case errors.Is(err, errHeadRefused):
			k.log.Debug().Err(err).Str("key", key).Msg("cannot look at the key; completing again")
		case err != nil:
			return nil, err
		}
	}
	if cp == nil {
		imur, err := bucket.InitiateMultipartUpload(key, oss.ContentType(p.ContentType), oss.ForbidOverWrite(true),
			k.dateHeader(), oss.WithContext(ctx))
		if alreadyExists(err) {
			return k.existing(ctx, info, key, p, err)
		}
		if err != nil {
			return nil, err
		}
		cp = &mpCheckpoint{V: checkpointVersion, Bucket: bucket.BucketName, Key: key, UploadID: imur.UploadID,
			Size: p.size, ModTime: p.mtime.UnixNano(), PartSize: partSize}
		if err := saveCheckpoint(cpPath, cp); err != nil {
			k.abortUpload(ctx, bucket, key, imur.UploadID)
			return nil, err
		}
	}
	imur := oss.InitiateMultipartUploadResult{Bucket: bucket.BucketName, Key: key, UploadID: cp.UploadID}
	nparts := int((p.size + partSize - 1) / partSize)
	done := make([]bool, nparts+1)
	var sent int64
	for _, part := range cp.Parts {
		done[part.Number] = true
		sent += min(partSize, p.size-int64(part.Number-1)*partSize)
	}
	prog.resumed(sent)

	var mu sync.Mutex // guards cp, sent and the checkpoint file
	// After a part fails no new part starts, but the parts in flight are not cancelled:
	// they finish and go into the checkpoint, so the next attempt does not send them
	// again (on a slow link a part is megabytes already sent). ctx still stops them all.
	var g errgroup.Group
	var failed atomic.Bool
	g.SetLimit(uploadRoutines)
	for n := 1; n <= nparts && !failed.Load() && ctx.Err() == nil; n++ {
		if done[n] {
			continue
		}
		g.Go(func() error {
			if failed.Load() {
				return nil // queued behind the limit when a sibling failed; Wait reports that failure
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			off := int64(n-1) * partSize
			size := min(partSize, p.size-off)
			// Opened by path, so that a file deleted during its upload fails it. The SDK
			// checks the part's CRC-64 that OSS reports against the bytes it sent.
			var h http.Header
			part, err := bucket.UploadPartFromFile(imur, p.Path, off, size, n,
				prog.with(n, k.dateHeader(), oss.WithContext(ctx), oss.GetResponseHeader(&h))...)
			if err != nil {
				failed.Store(true)
				prog.failed(n)
				return err
			}
			prog.done(n, size)
			crc := h.Get(oss.HTTPHeaderOssCRC64)
			if !validPartCRC(crc) {
				crc = "" // read again for the clip's CRC-64
			}
			mu.Lock()
			defer mu.Unlock()
			cp.Parts = append(cp.Parts, mpPart{Number: n, ETag: part.ETag, CRC: crc})
			sent += size
			if err := saveCheckpoint(cpPath, cp); err != nil {
				failed.Store(true)
				return err
			}
			if k.onProgress != nil {
				k.onProgress(sent, p.size)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if noSuchUpload(err) {
			return k.lostUpload(ctx, info, key, p, cpPath, err)
		}
		if _, serr := os.Stat(p.Path); errors.Is(err, fs.ErrNotExist) && errors.Is(serr, fs.ErrNotExist) {
			// The file is gone: its upload can never complete.
			k.dropUpload(ctx, bucket, cp, cpPath)
			return nil, fmt.Errorf("devicekit: %s disappeared during its upload: %w", p.Path, err)
		}
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A file that changed during the upload does not become an object.
	if err := p.unchanged(); err != nil {
		k.dropUpload(ctx, bucket, cp, cpPath)
		return nil, err
	}
	crc, err := partsCRC(p, cp.Parts, partSize)
	if err != nil {
		return nil, err
	}
	p.setCRC(crc)
	parts := make([]oss.UploadPart, len(cp.Parts))
	for i, part := range cp.Parts {
		parts[i] = oss.UploadPart{PartNumber: part.Number, ETag: part.ETag}
	}
	slices.SortFunc(parts, func(a, b oss.UploadPart) int { return a.PartNumber - b.PartNumber })
	if !cp.Completing {
		cp.Completing = true // from here on, a restart looks at the key first
		if err := saveCheckpoint(cpPath, cp); err != nil {
			return nil, err
		}
	}
	var h http.Header
	_, err = bucket.CompleteMultipartUpload(imur, parts, oss.ForbidOverWrite(true), k.dateHeader(), oss.WithContext(ctx), oss.GetResponseHeader(&h))
	switch {
	case err == nil:
		if k.afterComplete != nil {
			k.afterComplete(cpPath)
		}
		os.Remove(cpPath)
		return h, nil
	case noSuchUpload(err):
		return k.lostUpload(ctx, info, key, p, cpPath, err)
	case alreadyExists(err):
		// Another recording took the key since the HeadObject (or it could not be made).
		h, err := k.existing(ctx, info, key, p, err)
		if err == nil || errors.Is(err, errKeyTaken) {
			k.dropUpload(ctx, bucket, cp, cpPath)
		}
		return h, err
	}
	return nil, err
}

// lostUpload handles a multipart upload that OSS no longer knows (err: NoSuchUpload):
// completed by a request whose answer was lost, aborted, or expired. Its checkpoint goes;
// if the key holds the clip, the upload is done, else the next try starts a new one
// (NoSuchUpload is transient).
func (k *Kit) lostUpload(ctx context.Context, info clipgate.OSSInfo, key string, p *prepared, cpPath string, err error) (http.Header, error) {
	os.Remove(cpPath)
	h, herr := k.holds(ctx, info, key, p)
	switch {
	case h != nil:
		k.log.Info().Str("key", key).Msg("the multipart upload had completed (same size and CRC-64)")
		return h, nil
	case errors.Is(herr, errKeyTaken):
		return nil, herr
	}
	k.log.Warn().Str("path", cpPath).Msg("OSS no longer knows the multipart upload; it will start over")
	return nil, err
}
