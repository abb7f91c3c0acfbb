package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
)

// The file is read once, as it is sent (issue 15). These tests hold the guarantees that
// the separate pass over the file used to give: the CRC-64 of the bytes sent is compared
// with OSS's, a file that changes during the upload fails it, and the event carries the
// file's CRC-64.

// Bytes corrupted on the way, and a CRC-64 misreported by OSS, fail the upload: the SDK
// compares the CRC-64 of the bytes it sent with OSS's for a PutObject and every part, the
// kit the parts' combined CRC-64 with the CompleteMultipartUpload's.
func TestUploadComparesCRCWithOSS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		size      int
		fault     fault
		wantError string
	}{
		{"put body corrupted", MinPartSize, fault{op: "put", action: corruptBody, count: 1}, "crc"},
		{"put CRC misreported", MinPartSize, fault{op: "put", action: wrongCRC, count: 1}, "crc"},
		{"part body corrupted", 5 * MinPartSize, fault{op: "part", action: corruptBody, skip: 2, count: 1}, "crc"},
		{"complete CRC misreported", 5 * MinPartSize, fault{op: "complete", action: wrongCRC, count: 1}, "CRC-64 mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, proxy := proxiedStack(t)
			k := s.kit("cam-crc", smallParts)
			f := tc.fault
			proxy.inject(&f)
			path, _ := clipFile(t, "c.mp4", tc.size)
			ev, err := k.Upload(t.Context(), Clip{Path: path})
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.wantError)) || ev.Status != clipgate.StatusFailed {
				t.Fatalf("Upload with %s: %+v, %v; want a failure naming %q", tc.name, ev, err, tc.wantError)
			}
			if proxy.hits(&f) != 1 {
				t.Fatalf("fault injected %d times, want 1", proxy.hits(&f))
			}
			if got := s.event(); got.ID != ev.ID || got.Status != clipgate.StatusFailed {
				t.Errorf("consumer got %+v, want the failed event %s", got, ev.ID)
			}
		})
	}
}

// A file that changes during its upload, or is replaced by another file, fails it (its
// bytes no longer match the size and modification time it was opened with); a multipart
// upload is then aborted before it becomes an object.
func TestUploadDetectsFileChangedDuringUpload(t *testing.T) {
	t.Parallel()
	changes := map[string]func(t *testing.T, path string){
		"rewritten in place": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			fi, _ := f.Stat()
			if _, err := f.WriteAt(make([]byte, fi.Size()), 0); err != nil {
				t.Error(err)
			}
		},
		"appended": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			if _, err := f.Write([]byte("more")); err != nil {
				t.Error(err)
			}
		},
		"replaced": func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			b[0] ^= 0xff
			if err := os.WriteFile(path+".new", b, 0o600); err != nil {
				t.Error(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Error(err)
			}
		},
	}
	for name, change := range changes {
		for _, size := range []int{2 * MinPartSize / 3, 6 * MinPartSize} {
			multipart := size >= 2*MinPartSize
			t.Run(name+"/"+strconv.FormatBool(multipart), func(t *testing.T) {
				t.Parallel()
				s := newStack(t, stackOptions{})
				k := s.kit("cam-change", smallParts)
				path, _ := clipFile(t, "c.mp4", size)
				// An old modification time, which a write now certainly changes.
				old := time.Date(2025, 3, 3, 3, 3, 3, 0, time.UTC)
				if err := os.Chtimes(path, old, old); err != nil {
					t.Fatal(err)
				}
				var once sync.Once
				progress := func(sent, total int64) {
					if sent > 0 && sent < total {
						once.Do(func() { change(t, path) })
					}
				}
				ev, err := k.Upload(t.Context(), Clip{Path: path, Progress: progress})
				if err == nil || !(strings.Contains(err.Error(), "changed during the upload") || strings.Contains(err.Error(), "replaced by another file")) ||
					ev.Status != clipgate.StatusFailed {
					t.Fatalf("Upload of a file %s during its upload: %+v, %v", name, ev, err)
				}
				if multipart {
					if objs := s.objects("cam-change"); len(objs) != 0 {
						t.Errorf("objects stored: %v", objs)
					}
					if ups := s.openUploads(); len(ups) != 0 {
						t.Errorf("multipart uploads left: %+v", ups)
					}
				}
				s.event()
			})
		}
	}
}

// The event ID of a clip is derived, not drawn: the same file uploaded again to the same
// key is announced under the same ID (a retry after a crash whose event was published),
// the same file under another name, and another recording that goes to the alternate key
// of the same name (same size and modification time), under other IDs.
func TestUploadEventIDIsDerived(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-ids", nil)
	first, _ := sameDayClip(t, "same.mp4", 2000)
	ev1, err := k.Upload(t.Context(), Clip{Path: first})
	if err != nil {
		t.Fatal(err)
	}
	s.event()
	ev2, err := k.Upload(t.Context(), Clip{Path: first})
	if err != nil {
		t.Fatal(err)
	}
	s.event()
	if ev2.ID != ev1.ID || ev2.Key != ev1.Key {
		t.Errorf("the same file uploaded again: event %s for %s, want %s for %s", ev2.ID, ev2.Key, ev1.ID, ev1.Key)
	}
	ev3, err := k.Upload(t.Context(), Clip{Path: first, Name: "other.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	s.event()
	second, _ := sameDayClip(t, "same.mp4", 2000)
	ev4, err := k.Upload(t.Context(), Clip{Path: second})
	if err != nil {
		t.Fatal(err)
	}
	s.event()
	if !strings.Contains(ev4.Key, "~") {
		t.Fatalf("another recording of the same name went to %s, want its alternate key", ev4.Key)
	}
	ids := map[string]string{ev1.ID: "first", ev3.ID: "other name", ev4.ID: "other recording"}
	if len(ids) != 3 || !protocolID(ev1.ID) || !protocolID(ev3.ID) || !protocolID(ev4.ID) {
		t.Errorf("event IDs %s, %s, %s: want three valid, distinct IDs", ev1.ID, ev3.ID, ev4.ID)
	}
}

// cancelAfterParts starts a multipart upload of path and cancels it after n parts; the
// checkpoint stays.
func cancelAfterParts(t *testing.T, k *Kit, path string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	parts := 0
	k.onProgress = func(done, total int64) {
		if parts++; parts == n {
			cancel()
		}
	}
	defer func() { k.onProgress = nil }()
	if _, err := k.Upload(ctx, Clip{Path: path}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload: %v", err)
	}
}

// editCheckpoint applies edit to the clip's only checkpoint.
func editCheckpoint(t *testing.T, k *Kit, edit func(*mpCheckpoint)) {
	t.Helper()
	cps := dirEntries(t, k, checkpointDir)
	if len(cps) != 1 {
		t.Fatalf("checkpoints %v, want one", cps)
	}
	path := filepath.Join(k.cfg.StateDir, checkpointDir, cps[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cp mpCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	edit(&cp)
	if err := saveCheckpoint(path, &cp); err != nil {
		t.Fatal(err)
	}
}

// The checkpoint records each part's CRC-64 as OSS reported it; a checkpoint without
// them (an older kit's) is resumed by reading those parts again for the clip's CRC-64;
// a wrong one fails the upload at the comparison with OSS's.
func TestMultipartResumeCombinesPartCRCs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*mpCheckpoint)
		fail bool
	}{
		{"as recorded", func(*mpCheckpoint) {}, false},
		{"without part CRCs", func(cp *mpCheckpoint) {
			for i := range cp.Parts {
				cp.Parts[i].CRC = ""
			}
		}, false},
		{"wrong part CRC", func(cp *mpCheckpoint) { cp.Parts[0].CRC = "12345" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOptions{})
			k := s.kit("cam-parts", smallParts)
			path, data := clipFile(t, "parts.mp4", 8*MinPartSize+17)
			cancelAfterParts(t, k, path, 3)
			editCheckpoint(t, k, func(cp *mpCheckpoint) {
				if len(cp.Parts) < 3 {
					t.Fatalf("checkpoint with %d parts, want at least 3", len(cp.Parts))
				}
				for _, part := range cp.Parts {
					off := int64(part.Number-1) * cp.PartSize
					want := strconv.FormatUint(crc64Of(data[off:min(off+cp.PartSize, int64(len(data)))]), 10)
					if part.CRC != want {
						t.Errorf("part %d recorded with CRC-64 %q, want %s", part.Number, part.CRC, want)
					}
				}
				tc.edit(cp)
			})
			ev, err := k.Upload(t.Context(), Clip{Path: path})
			if tc.fail {
				if err == nil || !strings.Contains(err.Error(), "CRC-64 mismatch") {
					t.Fatalf("resume with a wrong part CRC-64: %+v, %v", ev, err)
				}
				s.event()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, s, k, ev, "parts.mp4", data, mustStat(t, path).ModTime())
		})
	}
}
