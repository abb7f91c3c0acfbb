package devicekit

import (
	"errors"
	"mime"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidClipName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"a", "clip-0001.mp4", "A_b.C-9", strings.Repeat("x", MaxClipNameLen), "...", ".hidden",
		"门口 camera #1.mp4", "caméra 1.mp4", "a b", "clip?.mp4", "a%2Fb", "#", "+", "50% & more=yes.ts",
		"日本語のファイル名.mov", "emoji 📹.mp4", "\uFFFD.mp4", strings.Repeat("é", MaxClipNameLen/2),
	} {
		if err := ValidClipName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", ".", "..", "a/b", "../x", `a\b`, "a\x00", "a\nb", "a\rb", "tab\there", "del\x7f", "c1\u0085",
		" lead.mp4", "trail.mp4 ", "\u3000ideographic-space", "line\u2028sep", "para\u2029sep",
		"evil\u202egnp.exe", "lrm\u200e", "isolate\u2066x\u2069", "bad\xffutf8", "\xc3", strings.Repeat("x", MaxClipNameLen+1),
		strings.Repeat("é", MaxClipNameLen/2) + "x",
	} {
		if err := ValidClipName(bad); !errors.Is(err, ErrInvalidClip) {
			t.Errorf("%q: got %v, want ErrInvalidClip", bad, err)
		}
	}
}

func TestSanitizeClipName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300) + ".mp4"
	longUnicode := strings.Repeat("门", 100) + ".mp4" // 300 bytes of stem
	for in, want := range map[string]string{
		"clip-01.mp4":                         "clip-01.mp4",
		"门口 camera #1.mp4":                    "门口 camera #1.mp4", // the example keeps its name
		"2024-05-06T07:08.mp4":                "2024-05-06T07:08.mp4",
		"caméra 1.mp4":                        "caméra 1.mp4",
		"a/b\\c.mp4":                          "a_b_c.mp4",
		"bad\xffutf8":                         "bad_utf8",
		"nul\x00and\nnl":                      "nul_and_nl",
		"  spaced out.mp4  ":                  "spaced out.mp4",
		"\t":                                  "_",
		"":                                    "_",
		".":                                   "_",
		"..":                                  "__",
		" .. ":                                "__",
		"evil\u202egnp.exe":                   "evil_gnp.exe",
		long:                                  strings.Repeat("x", MaxClipNameLen-4) + ".mp4",
		longUnicode:                           strings.Repeat("门", (MaxClipNameLen-4)/3) + ".mp4", // cut on a character boundary
		strings.Repeat("a", 195) + "   b.mp4": strings.Repeat("a", 195) + ".mp4",                  // no trailing space left by the cut
	} {
		got := SanitizeClipName(in)
		if got != want {
			t.Errorf("SanitizeClipName(%q) = %q, want %q", in, got, want)
		}
		if err := ValidClipName(got); err != nil {
			t.Errorf("SanitizeClipName(%q) = %q is not a valid clip name: %v", in, got, err)
		}
	}
}

func FuzzSanitizeClipName(f *testing.F) {
	for _, s := range []string{"clip.mp4", "../..", "a\x00b", "门口 camera #1.mp4", " \u202e.", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SanitizeClipName(in)
		if err := ValidClipName(got); err != nil {
			t.Fatalf("SanitizeClipName(%q) = %q: %v", in, got, err)
		}
		if ValidClipName(in) == nil && got != in {
			t.Fatalf("SanitizeClipName changed the valid name %q to %q", in, got)
		}
		if alt := alternateName(got, 0xdeadbeef); ValidClipName(alt) != nil || alt == got {
			t.Fatalf("alternateName(%q) = %q", got, alt)
		}
	})
}

func TestAlternateName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		crc  uint64
		want string
	}{
		{"front-door.mp4", 0x0123456789abcdef, "front-door~0123456789abcdef.mp4"},
		{"门口 camera #1.mp4", 1, "门口 camera #1~0000000000000001.mp4"},
		{"noext", 2, "noext~0000000000000002"},
		{".hidden", 3, ".hidden~0000000000000003"},
		{strings.Repeat("门", 66) + ".mp4", 4, strings.Repeat("门", 59) + "~0000000000000004.mp4"},
	} {
		got := alternateName(tc.name, tc.crc)
		if got != tc.want || ValidClipName(got) != nil || len(got) > MaxClipNameLen || !utf8.ValidString(got) {
			t.Errorf("alternateName(%q, %x) = %q (%d bytes), want %q", tc.name, tc.crc, got, len(got), tc.want)
		}
	}
	if alternateName("a.mp4", 1) == alternateName("a.mp4", 2) {
		t.Error("two contents got the same alternate name")
	}
}

// The Content-Type comes from the fixed table, whatever the host's MIME database says.
func TestContentTypeOf(t *testing.T) {
	// Not parallel: it changes the process's MIME database the way a host's can.
	for ext, typ := range map[string]string{".ts": "text/vnd.trolltech.linguist", ".webm": "audio/webm", ".mp4": "application/x-bogus"} {
		if err := mime.AddExtensionType(ext, typ); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{
		"a.mp4": "video/mp4", "A.MP4": "video/mp4", "a.m4v": "video/mp4", "a.mov": "video/quicktime",
		"a.mkv": "video/x-matroska", "a.webm": "video/webm", "a.ts": "video/mp2t", "a.m2ts": "video/mp2t",
		"a.mts": "video/mp2t", "live.m3u8": "application/vnd.apple.mpegurl", "a.h264": "video/h264",
		"a.264": "video/h264", "a.h265": "video/h265", "a.265": "video/h265", "a.hevc": "video/h265",
		"a.jpg": "image/jpeg", "a.JPEG": "image/jpeg", "a.png": "image/png", "a.aac": "audio/aac",
		"a.mp3": "audio/mpeg", "a.wav": "audio/wav",
		"a.txt": DefaultContentType, "a": DefaultContentType, "a.": DefaultContentType, ".mp4": "video/mp4",
		"a.mp4.part": DefaultContentType, "a.exe": DefaultContentType, "门口.ts": "video/mp2t",
	} {
		if got := ContentTypeOf(name); got != want {
			t.Errorf("ContentTypeOf(%q) = %q, want %q", name, got, want)
		}
	}
	for ext, ct := range contentTypes {
		if _, _, err := mime.ParseMediaType(ct); err != nil || ext != strings.ToLower(ext) {
			t.Errorf("table entry %q: %q: %v", ext, ct, err)
		}
	}
}

func TestEmptyClipRule(t *testing.T) {
	t.Parallel()
	if err := emptyClip(1); err != nil {
		t.Errorf("1 byte: %v", err)
	}
	err := emptyClip(0)
	if !errors.Is(err, ErrEmptyClip) || !errors.Is(err, ErrInvalidClip) || !strings.HasPrefix(err.Error(), "empty file (0 bytes)") {
		t.Errorf("0 bytes: %v", err)
	}
}
