package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/sync/errgroup"
)

// Resumable multipart uploads, signed with the kit's clock.
//
// The SDK's UploadFile cannot carry a Date header to its parts (see clock.go), so the kit
// drives the SDK's InitiateMultipartUpload, UploadPartFromFile and CompleteMultipartUpload
// itself, each request with a fresh Date. Progress is checkpointed in
// StateDir/checkpoints/<eventID>.cp (written atomically and synced after every part), so an
// Upload of the same clip after a failure, a cancellation or a crash sends only the parts
// that are not recorded there. A part whose response was lost is sent again (OSS keeps the
// last copy of a part number).

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
}

type mpPart struct {
	Number int    `json:"n"`
	ETag   string `json:"etag"`
}

// partSizeFor returns the part size for a file of size bytes: the configured one, grown
// if the file would need more than maxParts parts.
func partSizeFor(size, configured int64) int64 {
	if least := (size + maxParts - 1) / maxParts; least > configured {
		return least
	}
	return configured
}

// loadCheckpoint returns the checkpoint at path if it belongs to this upload of p; a
// checkpoint that does not (another file version, another key, garbage) is removed.
func (k *Kit) loadCheckpoint(path, bucket, key string, p *prepared, partSize int64) *mpCheckpoint {
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			k.log.Warn().Err(err).Str("path", path).Msg("unreadable multipart checkpoint; starting over")
		}
		return nil
	}
	var cp mpCheckpoint
	nparts := int((p.size + partSize - 1) / partSize)
	valid := json.Unmarshal(b, &cp) == nil && cp.V == checkpointVersion && cp.Bucket == bucket &&
		cp.Key == key && cp.UploadID != "" && cp.Size == p.size && cp.ModTime == p.mtime.UnixNano() &&
		cp.PartSize == partSize && len(cp.Parts) <= nparts
	seen := make(map[int]bool, len(cp.Parts))
	for _, part := range cp.Parts {
		if !valid {
			break
		}
		valid = part.Number >= 1 && part.Number <= nparts && part.ETag != "" && !seen[part.Number]
		seen[part.Number] = true
	}
	if !valid {
		k.log.Warn().Str("path", path).Msg("multipart checkpoint does not match the clip; starting over")
		os.Remove(path)
		return nil
	}
	return &cp
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

// multipart uploads p to key in parts, resuming from the checkpoint at cpPath, and stores
// the CompleteMultipartUpload response header (with the object's CRC-64) in *h.
func (k *Kit) multipart(ctx context.Context, bucket *oss.Bucket, key string, p *prepared, cpPath string, h *http.Header) error {
	partSize := partSizeFor(p.size, k.cfg.PartSize)
	cp := k.loadCheckpoint(cpPath, bucket.BucketName, key, p, partSize)
	if cp == nil {
		imur, err := bucket.InitiateMultipartUpload(key, oss.ContentType(p.ContentType), k.dateHeader(), oss.WithContext(ctx))
		if err != nil {
			return err
		}
		cp = &mpCheckpoint{V: checkpointVersion, Bucket: bucket.BucketName, Key: key, UploadID: imur.UploadID,
			Size: p.size, ModTime: p.mtime.UnixNano(), PartSize: partSize}
		if err := saveCheckpoint(cpPath, cp); err != nil {
			return err
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

	var mu sync.Mutex // guards cp, sent and the checkpoint file
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadRoutines)
	for n := 1; n <= nparts && gctx.Err() == nil; n++ {
		if done[n] {
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			off := int64(n-1) * partSize
			size := min(partSize, p.size-off)
			part, err := bucket.UploadPartFromFile(imur, p.Path, off, size, n, k.dateHeader(), oss.WithContext(gctx))
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			cp.Parts = append(cp.Parts, mpPart{Number: n, ETag: part.ETag})
			sent += size
			if err := saveCheckpoint(cpPath, cp); err != nil {
				return err
			}
			if k.onProgress != nil {
				k.onProgress(sent, p.size)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		k.dropLostUpload(err, cpPath)
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	parts := make([]oss.UploadPart, len(cp.Parts))
	for i, part := range cp.Parts {
		parts[i] = oss.UploadPart{PartNumber: part.Number, ETag: part.ETag}
	}
	slices.SortFunc(parts, func(a, b oss.UploadPart) int { return a.PartNumber - b.PartNumber })
	_, err := bucket.CompleteMultipartUpload(imur, parts, k.dateHeader(), oss.WithContext(ctx), oss.GetResponseHeader(h))
	if err != nil {
		k.dropLostUpload(err, cpPath)
		return err
	}
	os.Remove(cpPath)
	return nil
}

// dropLostUpload removes the checkpoint of a multipart upload that OSS no longer knows
// (aborted, expired, or completed by a request whose response was lost): the next try
// starts a new one.
func (k *Kit) dropLostUpload(err error, cpPath string) {
	if se, ok := serviceError(err); ok && se.StatusCode == http.StatusNotFound && se.Code == "NoSuchUpload" {
		k.log.Warn().Str("path", cpPath).Msg("OSS no longer knows the multipart upload; it will start over")
		os.Remove(cpPath)
	}
}
