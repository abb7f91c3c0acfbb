// Package clipgatetest runs a whole clipgate in-process for integration tests, in the
// spirit of net/http/httptest: the local cloud (OSS and STS stand-ins that check
// signatures, tokens and policies), the MQTT broker and N token workers, on random
// loopback ports, with keys generated at start and every file under one directory.
//
// A test starts a stack, connects devices with devicekit and reads the upload events:
//
//	func TestUpload(t *testing.T) {
//		stack := clipgatetest.New(t, clipgatetest.Options{})  // closed when the test ends
//		events, err := stack.Consumer(ctx, "")                 // every upload event
//		kit, err := devicekit.New(stack.DeviceConfig("cam-01"))
//		err = kit.Connect(ctx)
//		ev, err := kit.Upload(ctx, devicekit.Clip{Path: "testdata/clip.mp4"})
//		got, err := events.Next(ctx)                           // the same event, via the broker
//		admin, err := stack.OSSClient()                        // check the object
//	}
//
// What the stack sets up:
//
//   - a fleet keyring for the token workers and its connect roots for the broker (device
//     keys derive from them: DeviceKey, DeviceConfig; the broker cannot open a reply);
//   - service accounts "tokenworker", "consumer" and "admin" with random passwords,
//     bcrypt-hashed at the minimum cost so that logins stay cheap (ServiceAccount);
//   - in the local cloud: the bucket (Options.Bucket, default "clips"), an admin access
//     key with full access (AdminKey, OSSClient), a role RoleName allowed oss:* on the
//     bucket, and the workers' access key, allowed nothing but sts:AssumeRole on that role;
//   - the broker with those identities and one revocation list shared with the workers
//     (Revoke, Restore; RevokeAtWorkers revokes at the workers only, so that a device
//     gets its credentials refused with clipgate.CodeRevoked);
//   - the token workers in one shared-subscription group, handing out credentials for the
//     device's prefix {Prefix}{deviceID}/ (Prefix default "clips/"); StopWorker and
//     StartWorker change the group while devices run.
//
// A stack started on a directory that an earlier stack used (Options.Dir) reuses its
// keys, passwords and objects; cmd/devstack runs it that way on fixed ports.
//
// Set CLIPGATE_TEST_LOG=1 to see every component's logs on stderr.
package clipgatetest
