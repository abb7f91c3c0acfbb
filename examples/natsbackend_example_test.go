package examples_test

import (
	"context"
	"log"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/events/natsevents"
	"github.com/clipgate/clipgate/examples/backend"
	"github.com/clipgate/clipgate/topics"
)

// Example_natsConsumer builds the example backend's consumer on a NATS JetStream cluster
// instead of an MQTT broker: natsevents.New gives the events.Source, and the consumer
// verifies and hands on the events as it does over MQTT. (Compiled, not run: it needs a
// NATS cluster; the natsevents package's own test runs it against one.)
func Example_natsConsumer() {
	client, err := oss.New("https://oss-cn-hangzhou.aliyuncs.com", "AK", "SK")
	if err != nil {
		log.Fatal(err)
	}
	bucket, err := client.Bucket("clips")
	if err != nil {
		log.Fatal(err)
	}
	scheme := topics.Default()
	src, err := natsevents.New(natsevents.Config{
		URLs:     []string{"nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"},
		Username: "consumer",
		Password: "service-account-password",
		Name:     "consumer:indexer-1",
		Topics:   scheme,
		Durable:  "indexer", // one durable consumer per backend service
		MQTTURL:  "tcp://nats-1:1883",
	})
	if err != nil {
		log.Fatal(err)
	}
	consumer, err := backend.NewConsumer(events.Config{
		Source: src,
		Topics: scheme,
		Bucket: "clips",
		Prefix: "clips/",
		OSS:    bucket,
	}, backend.NewIndex())
	if err != nil {
		log.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := consumer.Start(ctx); err != nil {
		log.Fatal(err)
	}
}
