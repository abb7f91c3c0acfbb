// Command console is clipgate's operator console: it indexes every upload event (verified
// against OSS, deduplicated, with a reconciler that lists the bucket for lost events) in
// SQLite or PostgreSQL, and serves a web UI and a JSON API to watch the fleet, play,
// delete and expire clips, and revoke or restore devices.
//
//	console --oss-endpoint https://oss-cn-hangzhou.aliyuncs.com --oss-bucket clips \
//	        --oss-access-key-id AK --password-hash-file hash.txt --revocations-file revoked.txt
//
// Every flag can also be set by its CLIPGATE_* environment variable or in a YAML file
// (--config), in that order of precedence (see --help). Secrets are never flags: the
// broker password comes from CLIPGATE_PASSWORD or --password-file, the OSS access key
// secret from CLIPGATE_OSS_ACCESS_KEY_SECRET or --oss-access-key-secret-file. The
// password of the admin named --admin-name (default admin) is configured as its bcrypt
// hash (make one with `broker hash-password`), from CLIPGATE_PASSWORD_HASH or
// --password-hash-file; the admin adds the other operators (viewers, admins) in the
// console. The database is a SQLite file (default console.db) or a postgres:// URL (put
// one with a password in CLIPGATE_DATABASE rather than on the command line).
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("console", run) }
