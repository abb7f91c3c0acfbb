// Command console is clipgate's operator console: it indexes every upload event (verified
// against OSS, deduplicated, with a reconciler that lists the bucket for lost events) in
// SQLite or PostgreSQL, and serves a web UI and a JSON API to watch the fleet, play,
// delete and expire clips, and revoke or restore devices.
//
//	console --oss-endpoint https://oss-cn-hangzhou.aliyuncs.com --oss-bucket clips \
//	        --oss-access-key-id AK --password-hash-file hash.txt --revocations-file revoked.txt
//
// Configuration comes from flags, CLIPGATE_* environment variables and a YAML file
// (--config), in that order of precedence. Secrets are never flags: the broker password
// comes from CLIPGATE_PASSWORD or --password-file, the OSS access key secret from
// CLIPGATE_OSS_ACCESS_KEY_SECRET or --oss-access-key-secret-file. The admin's password
// (--admin-name, default admin) is configured as its bcrypt hash (make one with `broker
// hash-password`); the admin adds the other operators (viewers, admins) in the console. The database
// is a SQLite file (default console.db) or a postgres:// URL (put one with a password in
// CLIPGATE_DATABASE rather than on the command line).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, errHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "console:", err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		_ = m.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	stop() // a second signal kills the process at once
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		os.Exit(1)
	}
}
