package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

// Files of the console in the state directory.
const (
	consoleDBFile       = "console.db"
	consolePasswordFile = "console-password"
	revocationsFile     = "revoked.txt"
)

// Console is the operator console of a devstack: its server and SQLite database in the
// state directory, and the operator password (kept in {Dir}/console-password, 0600).
type Console struct {
	*console.Console
	DB       *console.DB
	Password string
}

// startConsole runs the console on the stack: it indexes the stack's upload events into
// {dir}/console.db and serves on addr. Revoking a device in it revokes the device in the
// stack (and writes {dir}/revoked.txt for a broker or workers outside this process).
func startConsole(ctx context.Context, s *inproc.Stack, dir, addr string, log zerolog.Logger) (_ *Console, err error) {
	password, err := consolePassword(filepath.Join(dir, consolePasswordFile))
	if err != nil {
		return nil, err
	}
	hash, err := identity.HashPassword(password)
	if err != nil {
		return nil, err
	}
	db, err := console.OpenSQLite(ctx, filepath.Join(dir, consoleDBFile))
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	client, err := s.OSSClient()
	if err != nil {
		return nil, err
	}
	bucket, err := client.Bucket(s.Bucket())
	if err != nil {
		return nil, err
	}
	user, pass := s.ServiceAccount(topics.RoleConsumer)
	cfg := console.Config{
		BrokerURL:       s.BrokerURL(),
		Username:        user,
		Password:        pass,
		ClientID:        user + ":devstack-console",
		Topics:          s.Topics(),
		Bucket:          bucket,
		Prefix:          s.Prefix(),
		Store:           db,
		Addr:            addr,
		PasswordHash:    hash,
		RevocationsFile: filepath.Join(dir, revocationsFile),
		OnRevoke: func(id string, revoked bool) {
			if revoked {
				s.Revoke(id)
			} else {
				s.Restore(id)
			}
		},
		ReconcileMinAge: time.Minute, // a development stack: lost events are healed quickly
		Logger:          log,
	}
	if s.Cluster() != nil { // NATS: a JetStream durable consumer and a core subscription
		if cfg.Events, err = s.EventsSource("console", "devstack-console"); err != nil {
			return nil, err
		}
		if cfg.Status, err = s.StatusSource("devstack-console-status"); err != nil {
			return nil, err
		}
	}
	c, err := console.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("devstack: console on %s: %w", addr, err)
	}
	return &Console{Console: c, DB: db, Password: password}, nil
}

// Close stops the console and closes its database.
func (c *Console) Close() error {
	return errors.Join(c.Console.Close(), c.DB.Close())
}

// consolePassword reads the operator password from path, or creates a random one there.
func consolePassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if pw := strings.TrimSpace(string(b)); pw != "" {
			return pw, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("devstack: %w", err)
	}
	raw := make([]byte, 12)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("devstack: %w", err)
	}
	return pw, nil
}

// waitIndexed waits until every key is in the console's index, or ctx ends; it returns
// the keys still missing. It looks at least once, even if ctx has ended.
func (c *Console) waitIndexed(ctx context.Context, keys []string) []string {
	for {
		var missing []string
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		for _, k := range keys {
			if _, err := c.DB.Clip(qctx, k); err != nil {
				missing = append(missing, k)
			}
		}
		cancel()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return missing
		case <-time.After(20 * time.Millisecond):
		}
		keys = missing
	}
}
