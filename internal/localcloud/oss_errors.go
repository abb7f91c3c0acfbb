package localcloud

// OSS error documents carry an EC, a fine-grained error code (also sent as the x-oss-ec
// header), and a RecommendDoc link to Alibaba's troubleshooting page for it:
// https://www.alibabacloud.com/help/en/oss/user-guide/overview-14. An Error sets EC where one
// cause has its own documented EC; otherwise its code's EC below applies.

// ecUnknown is the EC sent where Alibaba's documentation gives none that could be found for
// the cause. OSS always sends an EC; a recognisably empty one is more honest than a guess.
// Such errors carry no RecommendDoc.
const ecUnknown = "0000-00000000"

// ecByCode maps error codes to the EC Alibaba documents for their usual cause, each with
// where it is documented.
var ecByCode = map[string]string{
	// https://www.alibabacloud.com/help/en/oss/support/0003-00000001 (no Allow in the
	// policies; explicit denies have their own ECs, 0003-00000201 and up).
	"AccessDenied": "0003-00000001",
	// https://www.alibabacloud.com/help/en/oss/developer-reference/faq-24 (sample error).
	"SignatureDoesNotMatch": "0002-00000040",
	// The error samples in alibabacloud-oss-go-sdk-v2's tests (client_mock_*_test.go).
	"NoSuchBucket":             "0015-00000101",
	"NoSuchKey":                "0026-00000001",
	"PositionNotEqualToLength": "0026-00000016",
	// https://www.alibabacloud.com/help/en/oss/support/0002-00000006 and 0002-00000007.
	"InvalidSecurityToken": "0002-00000006",
	"SecurityTokenExpired": "0002-00000007",
	// https://www.alibabacloud.com/help/en/oss/support/0002-00000004.
	"AccessKeyIdAndSecurityTokenNotMatch": "0002-00000004",
}

// recommendDoc is the troubleshooting link OSS sends with an EC.
func recommendDoc(ec string) string { return "https://api.aliyun.com/troubleshoot?q=" + ec }

// errorEC returns the EC of e and whether it is a documented one.
func errorEC(e *Error) (string, bool) {
	if e.EC != "" {
		return e.EC, true
	}
	if ec, ok := ecByCode[e.Code]; ok {
		return ec, true
	}
	return ecUnknown, false
}
