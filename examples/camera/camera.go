// Package camera is an example camera application built on devicekit: it uploads the
// clips its recorder finishes and decides, from the error of a failed upload, what to do
// next.
package camera

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
)

// Camera uploads clips through a device kit.
type Camera struct {
	kit *devicekit.Kit
}

// New returns a camera with the device kit configuration cfg; Start connects it.
func New(cfg devicekit.Config) (*Camera, error) {
	kit, err := devicekit.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("camera: %w", err)
	}
	return &Camera{kit: kit}, nil
}

// Start connects the camera to the broker.
func (c *Camera) Start(ctx context.Context) error { return c.kit.Connect(ctx) }

// Close disconnects the camera; unsent events stay in its state directory.
func (c *Camera) Close() error { return c.kit.Close() }

// Upload stores the clip at path, recorded at recordedAt, and returns its upload event.
func (c *Camera) Upload(ctx context.Context, path string, recordedAt time.Time) (*clipgate.UploadEvent, error) {
	return c.kit.Upload(ctx, devicekit.Clip{
		Path:       path,
		RecordedAt: recordedAt,
		Metadata:   map[string]string{"source": "example-camera"},
	})
}

// Step is what the camera does after a failed upload.
type Step int

// The steps.
const (
	// RetryLater: the failure is transient; keep the clip and upload it again later.
	RetryLater Step = iota + 1
	// SkipClip: this clip cannot be uploaded (an empty or unreadable file); move on.
	SkipClip
	// CheckSetup: the device's key or configuration is wrong; an operator must fix it.
	CheckSetup
	// StopForGood: the device is revoked; stop recording uploads.
	StopForGood
)

// String returns the step's name.
func (s Step) String() string {
	switch s {
	case RetryLater:
		return "retry later"
	case SkipClip:
		return "skip clip"
	case CheckSetup:
		return "check setup"
	case StopForGood:
		return "stop for good"
	}
	return fmt.Sprintf("Step(%d)", int(s))
}

// NextStep says what to do after an upload failed with err, and how long to wait before
// retrying when the token worker said so.
func NextStep(err error) (Step, time.Duration) {
	if errors.Is(err, devicekit.ErrInvalidClip) {
		return SkipClip, 0
	}
	var ae *clipgate.AuthError
	if !errors.As(err, &ae) {
		return RetryLater, 0 // network, broker, OSS: the kit has retried; try again later
	}
	switch ae.Code {
	case clipgate.CodeRevoked:
		return StopForGood, 0
	case clipgate.CodeUnauthenticated, clipgate.CodeDenied, clipgate.CodeInvalid:
		return CheckSetup, 0
	case clipgate.CodeRateLimited, clipgate.CodeBusy, clipgate.CodeQuotaExceeded:
		return RetryLater, ae.RetryAfter
	default: // CodeUnavailable, CodeInternal, and codes the kit retried itself
		return RetryLater, 0
	}
}
