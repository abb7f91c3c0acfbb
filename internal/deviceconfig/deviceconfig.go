// Package deviceconfig is the device configuration shared by the commands: devstack
// writes one for its demo camera (.devstack/device.yaml), and the device CLI reads it as
// its --config file (package cli's loader) and turns the settings into a devicekit
// configuration here.
//
// The file is YAML; its keys are the device CLI's flag names (nested tls keys join with
// '-': tls: ca-file is --tls-ca-file):
//
//	broker: tcp://127.0.0.1:1883
//	device-id: cam-0001
//	device-key-file: device.key    # relative paths are relative to this file's directory
//	state-dir: device-state
//	topic-root: clipgate/v1        # optional
//	mode: w                        # optional
//	multipart-threshold: 8MiB      # optional: bytes, or a size such as 8MiB or 500KB
//	part-size: 1048576             # optional: bytes, or a size such as 1MiB
//	upload-rate: 1MiB              # optional: cap on upload bytes per second (0: none)
//	upload-rate-at:                # optional: daily exceptions, the first matching wins
//	  - 22:00-06:00=0              #   no cap at night
//	  - 07:00-09:00=256KiB
//	tls:                           # optional, for ssl://, tls://, mqtts:// and wss:// brokers
//	  ca-file: ca.pem
//	  cert-file: device.pem
//	  key-file: device-key.pem
//	  server-name: broker.example
//
// The device key itself lives in its own file, readable by its owner only
// (devicekit.LoadDeviceKey refuses anything else); the configuration file holds no secret.
package deviceconfig

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/topics"
)

// File is the content of a device configuration file. Empty fields are unset: the
// optional ones take devicekit's defaults, and a command may fill the others from flags
// or the environment before calling KitConfig.
type File struct {
	// Broker is the MQTT broker URL, e.g. "tcp://127.0.0.1:1883". Required.
	Broker string `yaml:"broker,omitempty"`
	// Failover are further nodes of a clustered broker (a NATS cluster's MQTT gateways),
	// tried after Broker in order (devicekit.Config.FailoverURLs).
	Failover []string `yaml:"failover,omitempty"`
	// DeviceID is the camera's identity. Required.
	DeviceID string `yaml:"device-id,omitempty"`
	// DeviceKeyFile is the device key file (`broker device-key` writes it; mode 0600): the
	// key ID, connect key and request key. The kit rewrites it, atomically, with the new
	// key a token worker hands it after a key rotation. Required, unless the device has a
	// client certificate (tls.cert-file) and a TLS broker: then it may be left out, and the
	// certificate's key signs the device's requests.
	DeviceKeyFile string `yaml:"device-key-file,omitempty"`
	// StateDir is devicekit's state directory (checkpoints, journal, outbox). Required.
	StateDir string `yaml:"state-dir,omitempty"`
	// TopicRoot is the topic root; "" means topics.DefaultRoot.
	TopicRoot string `yaml:"topic-root,omitempty"`
	// TLS configures a TLS broker connection; nil means Go's defaults for TLS brokers.
	TLS *TLS `yaml:"tls,omitempty"`
	// Mode is the access asked for ("w", "wa", ...); "" means devicekit.DefaultMode.
	Mode string `yaml:"mode,omitempty"`
	// MultipartThreshold is the clip size from which uploads go in parts; 0 means
	// devicekit's default. The file may give it as bytes or with a unit (bytesize).
	MultipartThreshold bytesize.Size `yaml:"multipart-threshold,omitempty"`
	// PartSize is the multipart part size; 0 means devicekit's default. Bytes or a size
	// with a unit, as MultipartThreshold.
	PartSize bytesize.Size `yaml:"part-size,omitempty"`
	// UploadRate caps upload bytes per second (devicekit.Config.UploadRate); 0 means no
	// cap. Bytes or a size with a unit.
	UploadRate bytesize.Size `yaml:"upload-rate,omitempty"`
	// UploadRateAt are daily exceptions to UploadRate ("22:00-06:00=4MiB"), the first
	// whose window holds the local time applying.
	UploadRateAt []RateProfile `yaml:"upload-rate-at,omitempty"`
}

// TLS is the TLS part of a device configuration.
type TLS struct {
	// CAFile is a PEM file of the CAs to trust; "" means the system roots.
	CAFile string `yaml:"ca-file,omitempty"`
	// CertFile and KeyFile are the PEM client certificate and its key (both or neither).
	CertFile string `yaml:"cert-file,omitempty"`
	KeyFile  string `yaml:"key-file,omitempty"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server-name,omitempty"`
}

// ErrInvalid is wrapped by every error about the content of a configuration.
var ErrInvalid = errors.New("invalid device config")

// FieldError is a missing or bad value of one field, named as in the file (e.g.
// "device-id", "tls.ca-file"), so that a command can tell which flag or variable sets it.
type FieldError struct {
	Field   string
	Missing bool // the field is required and empty
	Err     error
}

// Error returns "FIELD: message".
func (e *FieldError) Error() string {
	if e.Missing {
		return e.Field + " is required"
	}
	return e.Field + ": " + e.Err.Error()
}

// Unwrap returns ErrInvalid and the underlying error.
func (e *FieldError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.Err}
}

func fieldErr(field string, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// validate checks the fields that are set.
func (f *File) validate() error {
	if f.Broker != "" {
		if err := mqttclient.CheckURL("broker", f.Broker); err != nil {
			return &FieldError{Field: "broker", Err: errors.Unwrap(err)} // FieldError names the field
		}
	}
	for _, u := range f.Failover {
		if err := mqttclient.CheckURL("failover", u); err != nil {
			return &FieldError{Field: "failover", Err: errors.Unwrap(err)}
		}
	}
	if f.DeviceID != "" {
		if err := deviceid.Validate(f.DeviceID); err != nil {
			return &FieldError{Field: "device-id", Err: err}
		}
	}
	if f.TopicRoot != "" {
		if _, err := topics.New(f.TopicRoot); err != nil {
			return &FieldError{Field: "topic-root", Err: err}
		}
	}
	if f.Mode != "" {
		if _, err := clipgate.ParseMode(f.Mode); err != nil {
			return &FieldError{Field: "mode", Err: err}
		}
	}
	if f.MultipartThreshold < 0 {
		return fieldErr("multipart-threshold", "%d is negative", f.MultipartThreshold)
	}
	if f.PartSize < 0 {
		return fieldErr("part-size", "%d is negative", f.PartSize)
	}
	if f.UploadRate != 0 && f.UploadRate < devicekit.MinUploadRate {
		return fieldErr("upload-rate", "%d bytes/s: want 0 (no cap) or at least %d", f.UploadRate, devicekit.MinUploadRate)
	}
	for _, p := range f.UploadRateAt {
		if _, err := devicekit.ParseWindow(p.Window.String()); err != nil {
			return fieldErr("upload-rate-at", "%v", err)
		}
		if p.Rate < 0 || (p.Rate != 0 && p.Rate < devicekit.MinUploadRate) {
			return fieldErr("upload-rate-at", "%s: %d bytes/s: want 0 (no cap) or at least %d", p.Window, p.Rate, devicekit.MinUploadRate)
		}
	}
	if t := f.TLS; t != nil {
		if (t.CertFile == "") != (t.KeyFile == "") {
			return fieldErr("tls", "cert-file and key-file go together: set both or neither")
		}
		if f.Broker != "" && !mqttclient.UsesTLS(f.Broker) {
			return fieldErr("tls", "set, but broker %q does not use TLS (use ssl://, tls://, mqtts:// or wss://)", f.Broker)
		}
	}
	for _, p := range f.paths() {
		if strings.ContainsRune(*p.v, 0) {
			return fieldErr(p.name, "contains a NUL byte")
		}
	}
	return nil
}

type pathField struct {
	name string
	v    *string
}

// paths returns the fields that hold file or directory paths.
func (f *File) paths() []pathField {
	p := []pathField{{"device-key-file", &f.DeviceKeyFile}, {"state-dir", &f.StateDir}}
	if f.TLS != nil {
		p = append(p, pathField{"tls.ca-file", &f.TLS.CAFile}, pathField{"tls.cert-file", &f.TLS.CertFile}, pathField{"tls.key-file", &f.TLS.KeyFile})
	}
	return p
}

// Write checks f (the fields that are set) and writes it to path, readable
// by its owner only (0600): through a synced temporary file in the same directory and a
// rename, so that a reader sees the old file or the new one, never a part. An existing
// file is replaced. Paths are written as given; relative ones are read back relative to
// path's directory.
func Write(path string, f File) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("device config %s: %w", path, err)
	}
	if f.TLS != nil && *f.TLS == (TLS{}) {
		f.TLS = nil
	}
	var buf bytes.Buffer
	buf.WriteString("# clipgate device configuration (see internal/deviceconfig); paths are relative to this file.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return fmt.Errorf("device config %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("device config %s: %w", path, err)
	}
	if err := atomicfile.Write(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("device config: %w", err)
	}
	return nil
}

// KitConfig checks that the required fields are set, loads the device key (which must be
// readable by its owner only) and the TLS files, and returns the devicekit configuration.
// Relative paths are taken relative to the working directory (the command has resolved
// those of its file). devicekit.New applies the defaults and checks the ranges.
func (f File) KitConfig() (devicekit.Config, error) {
	var c devicekit.Config
	if err := f.validate(); err != nil {
		return c, err
	}
	// A device with a client certificate needs no device key file.
	certOnly := f.DeviceKeyFile == "" && f.TLS != nil && f.TLS.CertFile != ""
	required := []pathField{{"broker", &f.Broker}, {"device-id", &f.DeviceID}, {"state-dir", &f.StateDir}}
	if !certOnly {
		required = slices.Insert(required, 2, pathField{"device-key-file", &f.DeviceKeyFile})
	}
	for _, req := range required {
		if *req.v == "" {
			return c, &FieldError{Field: req.name, Missing: true}
		}
	}
	var key *devicekit.DeviceKey
	var err error
	if !certOnly {
		if key, err = devicekit.LoadDeviceKey(f.DeviceKeyFile); err != nil {
			return c, &FieldError{Field: "device-key-file", Err: err}
		}
		if key.Device != f.DeviceID {
			return c, &FieldError{Field: "device-key-file", Err: fmt.Errorf("%s is the key of device %q, not of %q", f.DeviceKeyFile, key.Device, f.DeviceID)}
		}
	} else if !mqttclient.UsesTLS(f.Broker) {
		return c, &FieldError{Field: "device-key-file", Missing: true} // a certificate needs a TLS broker
	}
	var scheme topics.Scheme // the zero scheme is the default root
	if f.TopicRoot != "" {
		if scheme, err = topics.New(f.TopicRoot); err != nil {
			return c, &FieldError{Field: "topic-root", Err: err}
		}
	}
	c = devicekit.Config{
		BrokerURL:          f.Broker,
		FailoverURLs:       f.Failover,
		DeviceID:           f.DeviceID,
		DeviceKeyFile:      f.DeviceKeyFile,
		StateDir:           f.StateDir,
		Topics:             scheme,
		Mode:               clipgate.Mode(f.Mode),
		MultipartThreshold: int64(f.MultipartThreshold),
		PartSize:           int64(f.PartSize),
		UploadRate:         int64(f.UploadRate),
		UploadRates:        kitProfiles(f.UploadRateAt),
	}
	if key != nil {
		c.DeviceKey = key
	}
	if f.TLS != nil && mqttclient.UsesTLS(f.Broker) {
		if c.TLS, err = f.TLS.config(); err != nil {
			return devicekit.Config{}, err
		}
	}
	return c, nil
}

// config builds the client TLS configuration.
func (t *TLS) config() (*tls.Config, error) {
	if t.CertFile != "" {
		if err := ownerOnly(t.KeyFile); err != nil {
			return nil, &FieldError{Field: "tls.key-file", Err: err}
		}
	}
	c, err := mqttclient.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}.Load()
	var fe *mqttclient.FileError
	switch {
	case errors.As(err, &fe) && fe.Field == "CAFile":
		return nil, &FieldError{Field: "tls.ca-file", Err: err}
	case err != nil:
		return nil, &FieldError{Field: "tls.cert-file", Err: err}
	}
	return c, nil
}

// ownerOnly refuses a private key file that its group or others may read.
func ownerOnly(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible by group or others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}
