package kongyaml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

type cli struct {
	Config    kong.ConfigFlag `type:"path"`
	OSSBucket string          `name:"oss-bucket"`
	Workers   int             `default:"1"`
	Region    string          `env:"KONGYAML_TEST_REGION"`
}

func parse(t *testing.T, file string, args ...string) (cli, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	var c cli
	// kong reads the file in New; a bad file is New's error.
	p, err := kong.New(&c, kong.Configuration(Loader("use the environment"), path), kong.Exit(func(int) {}))
	if err != nil {
		return c, err
	}
	_, err = p.Parse(args)
	return c, err
}

func TestLoader(t *testing.T) {
	c, err := parse(t, "oss:\n  bucket: clips\nworkers: 3\nregion: cn-file\n", "--workers", "4")
	if err != nil {
		t.Fatal(err)
	}
	if c.OSSBucket != "clips" || c.Workers != 4 || c.Region != "cn-file" {
		t.Fatalf("nested key, flag over file, file value: got %+v", c)
	}
	t.Setenv("KONGYAML_TEST_REGION", "cn-env")
	if c, err = parse(t, "region: cn-file\n"); err != nil || c.Region != "cn-env" {
		t.Fatalf("the environment must win over the file: %+v, %v", c, err)
	}
}

func TestLoaderRefusesGarbage(t *testing.T) {
	for name, tc := range map[string]struct{ file, want string }{
		"unknown key":   {"buckets: x\n", "unknown setting"},
		"secret":        {"oss-secret: x\n", "use the environment"},
		"list":          {"workers: [1, 2]\n", "lists are not supported"},
		"no value":      {"workers:\n", "no value"},
		"two documents": {"workers: 1\n---\nworkers: 2\n", ""},
		"not yaml":      {"{{{", ""},
		"oversized":     {"workers: 1\n#" + strings.Repeat("x", maxConfigFile), "larger than"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
