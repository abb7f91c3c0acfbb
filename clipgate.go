// Package clipgate holds the domain types that clipgate's public packages share, so
// that code outside this module can name them: the upload event a camera publishes and
// a backend consumer receives (UploadEvent, Status), the temporary OSS credentials a
// camera gets and where to use them (Credentials, OSSInfo), the credential Mode, and the
// closed set of error codes (Code) with the AuthError that carries one.
//
// The packages that use them:
//
//	devicekit      the camera library: credentials over MQTT, uploads, the event outbox
//	events         the backend consumer library: verified, deduplicated events
//	clipgatetest   the whole stack in-process, for integration tests
//	topics         the MQTT topic scheme and who may publish or subscribe where
//	policy         the least-privilege RAM policy of one device
//
// On the wire these types are JSON objects whose member names are their fields' JSON
// names: an UploadEvent is a message of its own (version member "v"), Credentials and
// OSSInfo travel inside the token worker's reply. Every receiver decodes them strictly:
// unknown, duplicate and null members are refused, and every field is checked.
package clipgate
