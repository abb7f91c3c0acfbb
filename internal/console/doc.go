// Package console is clipgate's operator console, the logic of cmd/console: a backend
// service built on the events package that indexes every upload in a database and serves
// a web UI and a JSON API to watch and manage the clips and the fleet.
//
// # Ingestion
//
// An events.Consumer in the shared group "console" (persistent session) verifies each
// upload event against OSS and hands it to Store.Index, which records the event ID (the
// deduplication record), the device's last contact and counters, and the clip, in one
// transaction; the event is acknowledged to the broker only after that commits. An
// events.Reconciler lists the bucket periodically and indexes objects whose event never
// arrived (its lookup is Store.KnownClip). A plain subscription to every device's status
// topic (retained "online", and "offline" as the devices' will) keeps the online flags.
//
// Events that name an object outside the publishing device's prefix or bucket are not
// indexed (that would let a device occupy another's keys): they count against the
// publisher as "rejected". Events whose object is missing or differs (size, CRC-64) are
// indexed unverified with the reason, and a later verified event or the reconciler
// replaces them. Every rejected event and every failed upload is also listed, with its
// reason and the device's error (Store.Problems, /problems, /api/problems), for as long
// as the deduplication record (Config.SeenTTL).
//
// A device's "last seen" is its own time: the ts of its status messages and the
// uploadedAt of its events, never later than the console's clock. (A retained status
// arrives again at each console start; its arrival says nothing about the device.)
//
// # Storage
//
// SQLite (modernc.org/sqlite, pure Go; WAL, FULL synchronous, busy timeout) by default,
// PostgreSQL (pgx) when given a postgres:// DSN; embedded migrations recorded in
// schema_migrations. Clip lists are keyset-paginated on (recorded_at, key), newest
// first, on an index per device and one for the whole fleet.
//
// # Web UI and API
//
// Server-rendered pages (html/template, embedded CSS and a few lines of JavaScript, no
// build step): the fleet (online/offline, last upload, clip counts), a device's clips by
// recording time, a player whose <video> streams the clip straight from OSS through a
// presigned GET URL valid for a few minutes, delete, revoke and restore, retention.
// The JSON API under /api offers the same (see routes).
//
// The operator logs in with a password whose bcrypt hash is configured. Sessions are
// server-side (the database holds the SHA-256 of the random 32-byte session ID, with an
// expiry); the cookie is HttpOnly, SameSite=Strict, and Secure under TLS. Every
// state-changing request needs the session's CSRF token (a form field or the
// X-CSRF-Token header) or is refused with 403; the login form has its own token, paired
// with a cookie. Login attempts are rate-limited per client address.
//
// # Revocation
//
// Revoking a device records it in the database, with its time, and hands the whole list
// to every component that enforces it: the revocation file (Config.RevocationsFile,
// rewritten atomically; the broker and the token workers watch it), the signed list
// (Config.RevocationKey: published retained on the revocation topic for components that
// share no filesystem; identity.Revocations.ApplySigned), the bucket policy
// (Config.DenyRoleARN: a Deny for the device's STS sessions, package ossdeny, so
// credentials it already holds stop working) and EMQX (Config.EMQX: its authorization
// cache cleared and the client kicked). In-process lists and hooks (Config.Revocations,
// Config.OnRevoke) are updated too. Objects a revoked device wrote after its revocation
// are indexed as rejected with reason "revoked" (events.ReasonRevoked).
package console
