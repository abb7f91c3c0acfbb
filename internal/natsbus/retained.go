package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// The MQTT gateway keeps each topic's retained message in RetainedStream, one per subject
// RetainedStreamPrefix+Subject(topic) (nats-server v2.15, server/mqtt.go: names internal
// to the gateway, like MQTTStream; TestFollowRetained fails if they change).
const (
	RetainedStream       = "$MQTT_rmsgs"
	RetainedStreamPrefix = "$MQTT.rmsgs."
	// RetainedGetSubject is the JetStream API subject that reads a message of
	// RetainedStream (the subject asked for is in the request's body).
	RetainedGetSubject = "$JS.API.STREAM.MSG.GET." + RetainedStream
	// retainedFlagsHeader is the header of a retained record in the current format:
	// then the body is the MQTT payload, and flags starting with '-' mark a cleared
	// message. Records without it are the older JSON format ({"msg": base64 payload}).
	retainedFlagsHeader = "Nmqtt-RFlags"
)

// LastRetained returns the payload of topic's retained MQTT message, or nil when it has
// none (or the gateway has not created its stream yet).
func LastRetained(ctx context.Context, nc *nats.Conn, topic string) ([]byte, error) {
	req, _ := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{RetainedStreamPrefix + Subject(topic)})
	m, err := nc.RequestWithContext(ctx, RetainedGetSubject, req)
	if err != nil {
		return nil, fmt.Errorf("natsbus: reading the retained message of %s: %w", topic, err)
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("natsbus: reading the retained message of %s: %w", topic, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 { // no message (10037) or no stream (10059)
			return nil, nil
		}
		return nil, fmt.Errorf("natsbus: reading the retained message of %s: %s (%d)", topic, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("natsbus: reading the retained message of %s: empty answer", topic)
	}
	return retainedPayload(resp.Message.Header, resp.Message.Data)
}

// retainedPayload decodes a record of RetainedStream.
func retainedPayload(hdr, data []byte) ([]byte, error) {
	if len(hdr) > 0 {
		h, err := nats.DecodeHeadersMsg(hdr)
		if err != nil {
			return nil, fmt.Errorf("natsbus: retained record header: %w", err)
		}
		if flags := h.Get(retainedFlagsHeader); flags != "" {
			if strings.HasPrefix(flags, "-") {
				return nil, nil // cleared
			}
			return data, nil
		}
	}
	var rm struct {
		Msg []byte `json:"msg"`
	}
	if err := json.Unmarshal(data, &rm); err != nil {
		return nil, fmt.Errorf("natsbus: retained record: %w", err)
	}
	return rm.Msg, nil
}

// followRetained applies topic's retained payload, then every payload published on it,
// in order, until the returned stop is called. The retained one is read after the live
// subscription is made, and live ones wait until it is applied, so none falls between;
// after a reconnect the retained one is read again (publishes during the outage).
func followRetained(ctx context.Context, nc *nats.Conn, topic string, apply func([]byte), onErr func(error)) (stop func(), err error) {
	var mu sync.Mutex // orders the retained payload before live ones
	refresh := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		p, err := LastRetained(ctx, nc, topic)
		if err == nil && p != nil {
			apply(p)
		}
		return err
	}
	mu.Lock()
	sub, err := nc.Subscribe(Subject(topic), func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		apply(m.Data)
	})
	if err == nil {
		err = nc.FlushWithContext(ctx)
	}
	mu.Unlock()
	if err != nil {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		return nil, fmt.Errorf("natsbus: following %s: %w", topic, err)
	}
	if err := refresh(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	status := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-runCtx.Done():
				return
			case st := <-status:
				if st == nats.CLOSED {
					return
				}
				if err := refresh(runCtx); err != nil && !errors.Is(err, context.Canceled) {
					onErr(err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
		nc.RemoveStatusListener(status)
		_ = sub.Unsubscribe()
	}, nil
}

// Follower follows a topic's retained MQTT message and its later publishes on a
// connection of its own (Follow).
type Follower struct {
	nc   *nats.Conn
	stop func()
}

// Follow connects with c and calls apply with topic's retained payload, if any, before it
// returns, then with each payload published on topic, one at a time, until Close.
// Errors reading the retained payload again after a reconnect go to onErr. The service
// account needs RetainedGetSubject and topic's subject.
func Follow(ctx context.Context, c Conn, topic string, apply func([]byte), onErr func(error)) (*Follower, error) {
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	stop, err := followRetained(ctx, nc, topic, apply, onErr)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Follower{nc: nc, stop: stop}, nil
}

// Close stops following and disconnects.
func (f *Follower) Close() {
	f.stop()
	f.nc.Close()
}
