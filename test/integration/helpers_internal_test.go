package integration

import (
	"context"
	"testing"
	"time"
)

// TestClientKeepsMessagesOnOtherTopics: waiting for a message on one topic keeps those
// that arrived before it on other topics (TestRepliesAreSealed timed out when a reply
// arrived before the request it waited for first, and the helper dropped the reply).
func TestClientKeepsMessagesOnOtherTopics(t *testing.T) {
	t.Parallel()
	c := &mqttClient{arrived: make(chan struct{})}
	c.add(message{topic: "reply", payload: []byte("r1")})
	c.add(message{topic: "request", payload: []byte("q1")})
	c.add(message{topic: "reply", payload: []byte("r2")})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, want := range []message{{"request", []byte("q1")}, {"reply", []byte("r1")}, {"reply", []byte("r2")}} {
		m, err := c.next(ctx, want.topic)
		if err != nil {
			t.Fatalf("next(%s): %v", want.topic, err)
		}
		if string(m.payload) != string(want.payload) {
			t.Fatalf("next(%s) = %q, want %q", want.topic, m.payload, want.payload)
		}
	}
	// Nothing is left, so waiting ends with the context.
	short, cancel2 := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel2()
	if m, err := c.nextAny(short); err == nil {
		t.Fatalf("nextAny returned %q from an empty client", m.payload)
	}

	// A message that arrives while next waits wakes it.
	go c.add(message{topic: "late", payload: []byte("l")})
	if m, err := c.next(ctx, "late"); err != nil || string(m.payload) != "l" {
		t.Fatalf("next(late) = %q, %v", m.payload, err)
	}
}
