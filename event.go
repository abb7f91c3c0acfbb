package clipgate

import "time"

// Status is the outcome an upload event announces.
type Status string

// The upload event statuses.
const (
	// StatusCompleted: the clip is stored; the event names its bucket, key, size and
	// CRC-64.
	StatusCompleted Status = "completed"
	// StatusFailed: the upload failed for good, or the clip was dropped or rejected; the
	// event's Error says why.
	StatusFailed Status = "failed"
)

// UploadEvent announces a finished (or definitively failed) upload: a device publishes it
// and backend consumers receive it. ID is stable across retries, so consumers deduplicate
// by it (with the device: IDs are the device's own).
//
// A completed event carries Bucket, Key, Size, CRC64 and UploadedAt and no Error; a
// failed one carries Error. IDs are 1 to 64 characters of [A-Za-z0-9_-], device IDs 2 to
// 64 of [A-Za-z0-9._-]; Metadata holds at most 32 entries of at most 256 bytes each.
type UploadEvent struct {
	V           int               `json:"v"`      // protocol version, 1
	ID          string            `json:"id"`     // event ID
	Device      string            `json:"device"` // device ID
	Status      Status            `json:"status"` // StatusCompleted or StatusFailed
	Bucket      string            `json:"bucket,omitempty"`
	Key         string            `json:"key,omitempty"`
	Size        int64             `json:"size"`            // bytes
	CRC64       string            `json:"crc64,omitempty"` // decimal uint64 (OSS CRC-64/ECMA)
	ContentType string            `json:"contentType,omitempty"`
	RecordedAt  time.Time         `json:"recordedAt,omitzero"`
	UploadedAt  time.Time         `json:"uploadedAt,omitzero"`
	Attempts    int               `json:"attempts,omitempty"` // upload attempts it took
	Metadata    map[string]string `json:"metadata,omitempty"`
	Error       string            `json:"error,omitempty"` // why a failed upload failed
}
