package mqttclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// TLSFiles names the PEM files of a client's TLS settings.
type TLSFiles struct {
	// CAFile holds the CA certificates the broker's certificate must chain to; empty
	// means the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's certificate chain and private key (mutual
	// TLS); set both or neither.
	CertFile, KeyFile string
	// ServerName is the name the broker's certificate must hold; empty means the
	// broker URL's host.
	ServerName string
}

// FileError is a TLS file that cannot be used. Field names the TLSFiles field ("CAFile",
// "CertFile" or "KeyFile"), so that a caller can name its own setting.
type FileError struct {
	Field, Path string
	Err         error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause (for a missing file, one that errors.Is fs.ErrNotExist).
func (e *FileError) Unwrap() error { return e.Err }

// Load reads the files into a client TLS configuration (TLS 1.2 or later). An error is a
// *FileError naming the file at fault.
func (f TLSFiles) Load() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pool, err := LoadCA(f.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	switch {
	case f.CertFile == "" && f.KeyFile == "":
	case f.CertFile == "":
		return nil, &FileError{Field: "CertFile", Path: f.KeyFile, Err: errors.New("a key file without its certificate file")}
	case f.KeyFile == "":
		return nil, &FileError{Field: "KeyFile", Path: f.CertFile, Err: errors.New("a certificate file without its key file")}
	default:
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, &FileError{Field: "CertFile", Path: f.CertFile, Err: fmt.Errorf("with key file %s: %w", f.KeyFile, err)}
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// LoadCA reads a file of PEM CA certificates into a pool: the one CA loader of clipgate,
// for the clients' broker CAs and the broker's client CAs alike. A file without a PEM
// certificate is an error. An error is a *FileError with Field "CAFile".
func LoadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, by FileError
		}
		return nil, &FileError{Field: "CAFile", Path: path, Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &FileError{Field: "CAFile", Path: path, Err: errors.New("no PEM certificate found")}
	}
	return pool, nil
}
