// Package aclmatrix is clipgate's access-control matrix as test cases: every role against
// every kind of topic and filter, written from the design rather than derived from the
// code, so that the mochi broker's tests and the NATS engine's run the same cases.
package aclmatrix

import "github.com/clipgate/clipgate/topics"

// Roles are the roles of the matrix, in the order of the want strings below.
var Roles = []topics.Role{topics.RoleDevice, topics.RoleTokenWorker, topics.RoleConsumer, topics.RoleAdmin}

// Case is one topic or filter and, per role (device, tokenworker, consumer, admin), whether
// it is allowed: "Y" or "-". own is the client's device ID (for the device role; other
// roles see the same topic), other another device's.
type Case struct {
	Topic func(own, other string) string
	Want  string
}

func dev(kind string) func(own, other string) string {
	return func(own, _ string) string { return "clipgate/v1/devices/" + own + "/" + kind }
}

func otherDev(kind string) func(own, other string) string {
	return func(_, other string) string { return "clipgate/v1/devices/" + other + "/" + kind }
}

func fixed(s string) func(own, other string) string {
	return func(_, _ string) string { return s }
}

// Publish and Subscribe are the matrix, written from the design (docs/ARCHITECTURE.md, topics package doc), not derived from
// the code: devices publish their own requests, events and status and read their own
// replies; token workers read requests only in a share group and answer on any reply
// topic; consumers read events and status; admins do anything under the root and read $SYS.
var Publish = map[string]Case{
	"own request":        {dev("auth/request"), "Y--Y"},
	"other request":      {otherDev("auth/request"), "---Y"},
	"own reply":          {dev("auth/reply"), "-Y-Y"},
	"other reply":        {otherDev("auth/reply"), "-Y-Y"},
	"own upload event":   {dev("events/upload"), "Y--Y"},
	"own other event":    {dev("events/motion"), "---Y"}, // not an event name of the protocol
	"other upload event": {otherDev("events/upload"), "---Y"},
	"own status":         {dev("status"), "Y--Y"},
	"other status":       {otherDev("status"), "---Y"},
	"root topic":         {fixed("clipgate/v1/notice"), "---Y"},
	"outside root":       {fixed("elsewhere/x"), "----"},
	"$SYS":               {fixed("$SYS/broker/clients/connected"), "----"},
	"$share as topic":    {func(own, _ string) string { return "$share/g/clipgate/v1/devices/" + own + "/auth/request" }, "----"},
}

var Subscribe = map[string]Case{
	"own reply":                 {dev("auth/reply"), "Y--Y"},
	"other reply":               {otherDev("auth/reply"), "---Y"},
	"own request":               {dev("auth/request"), "-Y-Y"}, // any one request topic: this is also the delivery check
	"own status":                {dev("status"), "--YY"},
	"all replies":               {fixed("clipgate/v1/devices/+/auth/reply"), "---Y"},
	"all requests unshared":     {fixed("clipgate/v1/devices/+/auth/request"), "---Y"},
	"one request unshared":      {otherDev("auth/request"), "-Y-Y"},
	"worker group":              {fixed("$share/tokenworkers/clipgate/v1/devices/+/auth/request"), "-Y-Y"},
	"another worker group":      {fixed("$share/pool-2/clipgate/v1/devices/+/auth/request"), "-Y-Y"},
	"share with empty group":    {fixed("$share//clipgate/v1/devices/+/auth/request"), "----"},
	"share of own reply":        {func(own, _ string) string { return "$share/g/clipgate/v1/devices/" + own + "/auth/reply" }, "---Y"},
	"all upload events":         {fixed("clipgate/v1/devices/+/events/upload"), "--YY"},
	"all upload events shared":  {fixed("$share/indexer/clipgate/v1/devices/+/events/upload"), "--YY"},
	"all events of all kinds":   {fixed("clipgate/v1/devices/+/events/+"), "--YY"},
	"all status":                {fixed("clipgate/v1/devices/+/status"), "--YY"},
	"one device's upload event": {otherDev("events/upload"), "--YY"},
	"all of one device":         {func(_, other string) string { return "clipgate/v1/devices/" + other + "/#" }, "---Y"},
	"devices subtree":           {fixed("clipgate/v1/devices/#"), "---Y"},
	"root subtree":              {fixed("clipgate/v1/#"), "---Y"},
	"root subtree shared":       {fixed("$share/g/clipgate/v1/#"), "---Y"},
	"everything":                {fixed("#"), "----"},
	"everything shared":         {fixed("$share/g/#"), "----"},
	"wildcard root":             {fixed("+/v1/devices/+/auth/reply"), "----"},
	"$SYS subtree":              {fixed("$SYS/#"), "---Y"},
	"$SYS topic":                {fixed("$SYS/broker/clients/connected"), "---Y"},
	"$SYS shared":               {fixed("$share/g/$SYS/#"), "----"},
	"outside root":              {fixed("elsewhere/#"), "----"},
}
