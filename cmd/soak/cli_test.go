package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
)

func TestMain(m *testing.M) {
	_ = sts.GetEndpointMap() // the STS SDK fills it lazily, without a lock
	os.Exit(m.Run())
}

// A short run with the faults that do not touch the broker: it prints every figure and
// passes.
func TestRunShort(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{
		"--devices", "2", "--clips", "2", "--duration", "6s", "--drain", "90s",
		"--interval", "200ms", "--large-every", "2", "--fault-interval", "2s",
		"--max-down", "1s", "--max-partition", "2s", "--no-broker-restart",
		"--dir", t.TempDir(), "--progress", "2s",
	}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		"soak: 2 devices x 2 clips, 6s (drain 1m30s), faults every ~2s: worker-restart, partition, cloud-restart",
		"\nuploads ", "\nevents delivered ", "\nduplicates ", "\nlost             0 ", "\nlatency          p50 ",
		"\nfaults ", "load average at start", "\nPASS\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "uploads ") {
		t.Errorf("no progress line on stderr:\n%s", errOut.String())
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--devices", "0"},
		{"--devices", "x"},
		{"--clips", "-1"},
		{"--duration", "0s"},
		{"--duration", "forever"},
		{"--part-size", "1000"},
		{"--part-size", "1KiB"},
		{"--small-size", "lots"},
		{"--large-size=-1KiB"},
		{"--small-size", "1.5"},
		{"--fault-interval", "1ms"},
		{"--log-level", "loud"},
		{"--no-such-flag"},
		{"extra-argument"},
		{"--log-file", "/nonexistent-dir/x.log"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, errOut.String())
		} else if errOut.Len() == 0 {
			t.Errorf("%v: no message on stderr", args)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "--[no-]broker-restart") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
}
