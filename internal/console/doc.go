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
// Before indexing a verified clip, the console reads its length, picture size and codec
// from its container (package media, through ranged GETs of 64 KiB on OSS, within a
// budget) and looks for the poster the device may have uploaded beside it
// ({key}.poster.jpg, see devicekit.Clip.Poster). A clip that is not a video is indexed
// with the reason; an OSS failure leaves the event for redelivery. The reconciler skips
// posters.
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
// build step; light and dark after prefers-color-scheme; tables become cards at phone
// width): the fleet (online/offline, last upload, clip counts, storage), a device's
// timelines per hour and per day with the gaps and its clips, a fleet-wide clip search
// by device, time and status, a player whose <video> streams the clip straight from OSS
// through a presigned GET URL valid for a few minutes, delete, revoke and restore,
// retention rules, operators, API tokens and the audit log. The JSON API under /api
// offers the same (apiRoutes; web/openapi.yaml, served as /api/openapi.json).
//
// Operators log in with a name and a password (bcrypt). A viewer watches; an admin also
// deletes, revokes, sets retention, manages operators and tokens, and reads the audit
// log. The admin of Config.PasswordHash is created at start; the others are added in the
// console. Sessions are server-side (the database holds the SHA-256 of the random 32-byte
// session ID, with an expiry, and the operator, whose current role applies); the cookie
// is HttpOnly, SameSite=Strict, and Secure under TLS. Every state-changing request made
// with a session needs the session's CSRF token (a form field or the X-CSRF-Token
// header) or is refused with 403; the login form has its own token, paired with a
// cookie. Login attempts are rate-limited per client address. Scripts use API tokens
// (Authorization: Bearer), which carry a role, are stored as their SHA-256, and can be
// revoked; a bearer request carries no cookie, so it needs no CSRF token.
//
// The audit log records logins, playback-URL issuance, deletes, revocations, retention
// runs and rules, lifecycle updates, and operator and token changes.
//
// # Retention
//
// Admins set retention rules (a prefix, an age); the console applies them every
// Config.RetentionEvery and records each run. With Config.Lifecycle it also writes them
// as the bucket's lifecycle rules, beside the bucket's own.
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
