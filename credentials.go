package clipgate

import "time"

// Credentials are temporary STS credentials for OSS, as a token worker hands them to a
// device: limited to the device's own objects and its Mode, until Expiration.
type Credentials struct {
	AccessKeyID     string    `json:"accessKeyId"`
	AccessKeySecret string    `json:"accessKeySecret"`
	SecurityToken   string    `json:"securityToken"`
	Expiration      time.Time `json:"expiration"`
}

// OSSInfo tells a device where to upload: its objects' keys are
// {Prefix}{deviceID}/{yyyy}/{mm}/{dd}/{clip} in Bucket.
type OSSInfo struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix"` // global key prefix, "" or ending in "/"
}
