// Command localcloud runs clipgate's local OSS- and STS-compatible servers on loopback, for
// development and tests without a cloud account.
//
//	localcloud                          # development keys, role and bucket, made on first run
//	localcloud -c localcloud.yaml       # keys, roles and buckets from a file
//	localcloud --buckets clips \
//	  --keys LTAIworker,secret-file=worker.secret,policy-file=assume-role.json \
//	  --keys LTAIconsole,secret-file=console.secret,policy-file=read-list-delete.json \
//	  --roles clipgate-device,policy-file=device-role.json
//
// Every flag can also be set by its CLIPGATE_* environment variable or in the YAML file
// given by --config, keyed by flag names, in that order of precedence (see --help). A
// configuration file looks like this (every setting is optional; policies are JSON
// strings, YAML mappings or files; relative paths are relative to the file; the keys may
// also be written in camelCase, as dataDir):
//
//	oss-addr: 127.0.0.1:9100
//	sts-addr: 127.0.0.1:9101
//	data-dir: localcloud-data
//	region: cn-hangzhou
//	endpoint-domain: localhost  # Host BUCKET.localhost addresses BUCKET; - turns it off
//	account-id: "1000000000000000"
//	sts-rate: 50                # AssumeRole calls per second; 0 = unlimited
//	buckets: [clips]
//	keys:
//	  - id: LTAIexampleworker
//	    secret-file: worker.secret  # one line, mode 0600 (an inline secret: works too)
//	    user: token-worker          # the RAM user's name (GetCallerIdentity, trust policies); default the key ID
//	    policy: {Version: "1", Statement: [{Effect: Allow, Action: "sts:AssumeRole", Resource: "*"}]}
//	roles:
//	  - name: clipgate-device
//	    max-session-duration: 1h
//	    policy: {Version: "1", Statement: [{Effect: Allow, Action: "oss:*", Resource: "acs:oss:*:*:clips/*"}]}
//	    # who may assume the role; this is the default (the account's users and role sessions)
//	    trust: {Version: "1", Statement: [{Effect: Allow, Action: "sts:AssumeRole", Principal: {RAM: ["acs:ram::1000000000000000:root"]}}]}
//
// SIGINT or SIGTERM stops the servers cleanly.
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("localcloud", run) }
