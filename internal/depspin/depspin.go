// Package depspin keeps the module's dependencies in go.mod while the packages that use them are
// being written in parallel. It is deleted once every dependency has a real importer.
package depspin

import (
	_ "github.com/alecthomas/kong"
	_ "github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
	_ "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	_ "github.com/aliyun/aliyun-oss-go-sdk/oss"
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/google/uuid"
	_ "github.com/mochi-mqtt/server/v2"
	_ "github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	_ "github.com/rs/zerolog"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/sync/singleflight"
	_ "golang.org/x/time/rate"
	_ "gopkg.in/yaml.v3"
)
