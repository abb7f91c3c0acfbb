// Package policy builds the least-privilege Alibaba Cloud RAM session policy of one
// device, and says what it grants (Actions, DeviceResource).
//
// # Least privilege per device
//
// A camera gets STS credentials whose session policy lets it touch only its own objects,
// "acs:oss:*:*:{bucket}/{prefix}{deviceID}/*", and only with what its clipgate.Mode needs:
//
//	w  oss:PutObject (put, append, multipart upload), oss:AbortMultipartUpload, oss:ListParts
//	a  oss:PutObject, oss:GetObject (stat and resync the append position)
//	r  oss:GetObject
//
// Letters combine ("wa", "rw"). No bucket-level action is granted, so a device cannot
// list the bucket, nor reach another device's prefix. DevicePolicy builds that policy
// (at most MaxSessionPolicyLen characters, as STS requires) after validating the bucket,
// prefix and device ID, so that no input can widen the resource with "*", "?" or "..".
//
// The OSS Media C SDK this project descends from grants "oss:HeadObject" for reads. That
// is not a RAM action: OSS authorizes HEAD, like GetObjectMeta, as oss:GetObject, so a
// policy naming oss:HeadObject grants nothing. This package never uses it.
//
// The local cloud parses and evaluates RAM, bucket and trust policies with the module's
// own evaluator, which is not part of the public API.
package policy
