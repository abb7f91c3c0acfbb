package devicekit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestUploadPoster: a clip's poster goes beside it as {key}.poster.jpg; a poster that is
// not a small JPEG file refuses the clip before any request.
func TestUploadPoster(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-poster", nil)
	path, data := clipFile(t, "clip.mp4", 4<<10)
	jpeg := append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte{7}, 500)...)
	poster := filepath.Join(t.TempDir(), "p.jpg")
	if err := os.WriteFile(poster, jpeg, 0o600); err != nil {
		t.Fatal(err)
	}
	// Bad posters first: nothing is asked or stored.
	notJPEG := filepath.Join(t.TempDir(), "p.png")
	big := filepath.Join(t.TempDir(), "big.jpg")
	if err := os.WriteFile(notJPEG, []byte("\x89PNG\r\n\x1a\n...."), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, append([]byte{0xff, 0xd8, 0xff}, make([]byte, MaxPosterSize)...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{notJPEG, big, poster + ".missing", t.TempDir()} {
		if ev, err := k.Upload(t.Context(), Clip{Path: path, Poster: p}); !errors.Is(err, ErrInvalidClip) || ev != nil {
			t.Errorf("poster %s: %v, %v", p, ev, err)
		}
	}
	if st := s.worker.Stats(); st.Requests != 0 {
		t.Errorf("bad posters caused %d credentials requests", st.Requests)
	}
	s.noEvent()

	ev, err := k.Upload(t.Context(), Clip{Path: path, Poster: poster})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.object(ev.Key); !bytes.Equal(got, data) {
		t.Fatalf("clip: %d bytes", len(got))
	}
	if got := s.object(ev.Key + PosterSuffix); !bytes.Equal(got, jpeg) {
		t.Fatalf("poster: %d bytes, want %d", len(got), len(jpeg))
	}
	if got := s.event(); got.Key != ev.Key {
		t.Fatalf("event %+v", got)
	}
}
