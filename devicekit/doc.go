// Package devicekit is clipgate's camera library: it gets a camera short-lived,
// least-privilege OSS credentials over MQTT, uploads video clips with the official
// aliyun-oss-go-sdk, and announces every upload with an event for backend consumers.
//
// # The flow
//
// In outline:
//
//	kit, err := devicekit.New(devicekit.Config{BrokerURL: url, DeviceID: "cam-0001", DeviceKey: key, StateDir: dir})
//	err = kit.Connect(ctx) // MQTT: client ID = username = device ID
//	ev, err := kit.Upload(ctx, devicekit.Clip{Path: "/var/spool/cam/clip-0001.mp4"})
//	err = kit.Close()
//
// Step by step:
//
//  1. Connect opens an MQTT 3.1.1 session to the broker. The password is derived from the
//     device key and the current time (an HMAC-SHA256 of both) and recomputed at every
//     reconnect; the kit subscribes to its own reply topic after every connect, and keeps
//     a retained "online"/"offline" status (with a will) on its status topic.
//  2. Credentials publishes a signed auth request (HMAC-SHA256 under the device key, a
//     timestamp and a fresh 16-byte nonce) and waits for the reply with the same request
//     ID. The credentials may come sealed to the device (AES-256-GCM under a key derived
//     from the device key and the nonce); the kit opens them. They are cached until
//     RefreshMargin before they expire, and concurrent callers share one request.
//  3. Upload stores the clip under {prefix}{deviceID}/{yyyy}/{mm}/{dd}/{name}: one
//     PutObject below MultipartThreshold, a resumable multipart upload above it, signed
//     with OSS V4 through CredentialsProvider, which the SDK asks before every request,
//     so a long upload moves to renewed credentials midway. The file is read once, as
//     it is sent: the CRC-64 of the bytes sent (the SDK's) is compared with the one OSS
//     reports, and the file's size and modification time after the upload with those
//     before it. The name is the file's (SanitizeClipName: UTF-8 kept)
//     and the Content-Type comes from a fixed table (ContentTypeOf). No object is ever
//     overwritten (x-oss-forbid-overwrite): a name held by another recording of the same
//     day sends the clip to "{stem}~{CRC-64 in hex}{ext}". Clip.Progress follows the bytes
//     as they go out.
//  4. The upload event (clipgate.UploadEvent) is written to an outbox in StateDir and
//     published with QoS 1 on the device's event topic; it leaves the outbox when the
//     broker acknowledges it, and is re-published after every reconnect until then. Its
//     ID is derived from the device key, the object key and the file's size and
//     modification time, so an Upload called again for the same file after a crash
//     announces it under the same ID. A clip below MultipartThreshold syncs nothing on
//     the device unless the acknowledgement fails to come (then the outbox entry is
//     synced before Upload returns).
//
// # Recordings (append mode)
//
// OpenAppend writes a growing recording with AppendObject, the seed SDK's "a" mode: the
// Recording buffers at most BufferSize bytes, appends them, checks the whole object's
// CRC-64 after every append, and on Close sends the completed event. After an append that
// got no answer it asks OSS for the object's length and CRC-64 to learn whether it landed
// (see append.go). Recordings use credentials of mode "a" (PutObject and GetObject). A
// crash loses at most the buffered bytes: OpenAppend of the same clip continues the
// recording at the object's length, under the same event ID.
//
// # Reading clips back
//
// Kit.Stat and Kit.Open are the seed SDK's mode "r": Stat gives an object's length, type
// (ObjectNormal, ObjectAppendable with its next append position, ObjectMultipart) and
// CRC-64; Open returns an ObjectReader (io.ReadSeekCloser) over ranged GetObject requests,
// resumed at the position if a connection breaks. Both use credentials of mode "r"
// (cached like the others), which reach the device's own prefix only: another device's
// clip is refused (fs.ErrPermission), a missing one is fs.ErrNotExist.
//
// # Upload controls
//
// Config.UploadRate caps the bytes per second the kit sends to OSS, all uploads together:
// every write to the kit's OSS connections takes its bytes from one token bucket, so a
// PutObject, the parts of a multipart upload and a recording's appends are paced alike
// (bandwidth.go). Config.UploadRates change the cap by local time of day (RateProfile,
// Window): for example no cap at night, a low one during business hours.
//
// A Spool sorts clips into priority classes (SpoolConfig.Classes, SpoolClass) by the
// subdirectory the recorder writes them into or by a name pattern: uploads go in class
// order, oldest first within a class, and each class may have daily windows of local time
// (continuous footage only at night). When the spool holds more than MaxBytes, the clips
// of the lowest class are dropped first, each announced with a "failed" event.
//
// # Failure model
//
// Everything is retried where retrying can help, and nothing else is:
//
// Every retry waits a jittered, exponentially growing time (one policy type, with bounds
// per kind of retry), so that a fleet hit by the same outage does not come back at once:
//
//   - Broker: the MQTT client reconnects by itself, the kit adding a jittered backoff
//     (up to a minute) before every attempt; calls wait for the connection within their
//     timeouts. Publish acknowledgements that complete across a reconnect are not trusted
//     and the message is sent again (consumers deduplicate by event ID); an event whose
//     publication failed while connected is tried again from the outbox after a backoff.
//   - Token worker: each request waits RequestTimeout; then, and on the codes
//     clipgate.CodeBusy, CodeRateLimited, CodeUnavailable and CodeInternal, the kit backs
//     off exponentially with full jitter, and after a retryAfterMs waits that long plus a
//     random part of it (a worker gives the same retryAfterMs to everyone it refuses at
//     once), for at most eight requests. CodeClockSkew corrects the clock from the
//     reply's serverTime and CodeReplay takes a fresh nonce, both at once. The terminal
//     codes (clipgate.Code.Terminal: CodeUnauthenticated, CodeRevoked, CodeDenied,
//     CodeInvalid) are final: a *clipgate.AuthError at once. So is CodeQuotaExceeded
//     (the device used its upload quota; its RetryAfter is the time to the reset, at
//     most a day): a Spool keeps the clip and tries again, nothing is dropped for it.
//   - Clock: every reply's serverTime sets the offset applied to Config.Now, so a camera
//     whose clock is hours off signs valid requests after its first reply. OSS requests
//     carry the corrected time in their Date header, which the SDK signs, so OSS's
//     15-minute window holds however far off the system clock is.
//   - OSS: network errors, timeouts and 5xx answers are tried again after a backoff, up
//     to 5 tries (the SDK itself does not retry). A 403 InvalidAccessKeyId,
//     InvalidSecurityToken, SecurityTokenExpired or RequestTimeTooSkewed drops the cached
//     credentials (new ones bring a fresh serverTime) and the upload is tried once more.
//     Multipart progress is checkpointed in StateDir after every part, with the event ID,
//     so calling Upload again for the same file resumes it, even after a restart.
//   - A key that answers 409 FileAlreadyExists (PutObject, InitiateMultipartUpload and
//     CompleteMultipartUpload carry x-oss-forbid-overwrite), and the key of a multipart
//     upload resumed after its CompleteMultipartUpload may have been sent, is looked at
//     (HeadObject, with credentials of mode "r" unless Config.Mode reads): the clip itself
//     there (a retry whose answer was lost, a kill after CompleteMultipartUpload) is
//     success without sending anything again.
//   - Abandoned uploads are aborted (AbortMultipartUpload): a checkpoint that no longer
//     fits, a name found taken midway, a file deleted during or after its upload, a clip
//     a Spool drops, state untouched for 7 days (a background sweep). New removes the
//     temporary files of writes a kill interrupted.
//   - Any other failure after the object key is known is announced with a "failed" event
//     (with its own ID) and returned with the error.
//
// # Security
//
// The device key never leaves the device; the credentials it receives are limited by the
// token worker's session policy to the device's own prefix and the requested mode, and
// last at most the role's session duration.
package devicekit
