package integration

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
)

// TestCredentialsConfinedToDevicePrefix: the credentials device A receives, used directly
// with aliyun-oss-go-sdk, can write under A's own prefix and nothing else: not read,
// write or delete under device B's prefix, not list the bucket. "cam-1" and "cam-10"
// share a string prefix, so a policy missing the "/" after the device ID would show here.
func TestCredentialsConfinedToDevicePrefix(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	stack := inproc.New(t, inproc.Options{})
	const devA, devB = "cam-1", "cam-10"
	recorded := time.Date(2024, 6, 2, 8, 0, 0, 0, time.UTC)

	// B stores a clip, so that there is something of B's to read.
	kitB := newKit(ctx, t, stack, devB, nil)
	clip, err := writeClip(t.TempDir(), "b.mp4", 4096)
	if err != nil {
		t.Fatal(err)
	}
	evB, err := kitB.Upload(ctx, devicekit.Clip{Path: clip.path, RecordedAt: recorded})
	if err != nil {
		t.Fatal(err)
	}

	kitA := newKit(ctx, t, stack, devA, nil)
	creds, err := kitA.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(creds.AccessKeyID, "STS.") || creds.SecurityToken == "" {
		t.Fatalf("device A got %q with token %q, want STS credentials", creds.AccessKeyID, creds.SecurityToken)
	}
	client, err := oss.New(creds.OSS.Endpoint, creds.AccessKeyID, creds.AccessKeySecret,
		oss.SecurityToken(creds.SecurityToken), oss.ForcePathStyle(true),
		oss.AuthVersion(oss.AuthV4), oss.Region(creds.OSS.Region))
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(creds.OSS.Bucket)
	if err != nil {
		t.Fatal(err)
	}

	// Control: the credentials work where they should.
	own := devicekit.ObjectKey(stack.Prefix(), devA, recorded, "own.mp4")
	if err := bucket.PutObject(own, bytes.NewReader([]byte("mine"))); err != nil {
		t.Fatalf("device A cannot write under its own prefix: %v", err)
	}

	prefixB := stack.Prefix() + devB + "/"
	_, err = bucket.GetObject(evB.Key)
	wantAccessDenied(t, "A reads B's object", err)
	err = bucket.PutObject(prefixB+"planted.mp4", bytes.NewReader([]byte("not B's")))
	wantAccessDenied(t, "A writes under B's prefix", err)
	err = bucket.PutObject(evB.Key, bytes.NewReader([]byte("overwrite")))
	wantAccessDenied(t, "A overwrites B's object", err)
	err = bucket.DeleteObject(evB.Key)
	wantAccessDenied(t, "A deletes B's object", err)
	_, err = bucket.ListObjects()
	wantAccessDenied(t, "A lists the bucket", err)
	_, err = bucket.ListObjects(oss.Prefix(prefixB))
	wantAccessDenied(t, "A lists B's prefix", err)
	_, err = bucket.ListObjects(oss.Prefix(stack.Prefix() + devA + "/"))
	wantAccessDenied(t, "A lists its own prefix (no list permission)", err)
	// Multipart is covered by the same resource: A cannot start one under B's prefix.
	_, err = bucket.InitiateMultipartUpload(prefixB + "planted-multipart.mp4")
	wantAccessDenied(t, "A starts a multipart upload under B's prefix", err)
	// A dot-dot segment in the key must not lead out of A's prefix: OSS keys are
	// literal, so either it is refused or it stays a key under A's prefix.
	dotdot := stack.Prefix() + devA + "/../" + devB + "/escape.mp4"
	if err := bucket.PutObject(dotdot, bytes.NewReader([]byte("escape"))); err != nil {
		wantAccessDenied(t, "A writes a ../ key", err)
	} else if _, err := stack.AdminBucket(t).GetObjectDetailedMeta(dotdot); err != nil {
		t.Errorf("PUT %s succeeded but no object has that literal key: %v", dotdot, err)
	}

	// Nothing of A's reached B's prefix, and B's object is intact.
	admin := stack.AdminBucket(t)
	res, err := admin.ListObjects(oss.Prefix(prefixB))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range res.Objects {
		keys = append(keys, o.Key)
	}
	if len(keys) != 1 || keys[0] != evB.Key {
		t.Errorf("under B's prefix: %v, want only %s", keys, evB.Key)
	}
	if err := checkObject(admin, evB.Key, clip.data, "Normal"); err != nil {
		t.Error(err)
	}
}
