#ifndef RAW_AMQP_BENCH_H
#define RAW_AMQP_BENCH_H

// The benchmark's baseline: the same workloads written directly against librabbitmq, the
// straightforward way a C programmer would. Used only by amqp-bench.

#include <stddef.h>
#include <stdint.h>

typedef struct raw_bench_connection raw_bench_connection;

/// Connects and opens channel 1. Returns NULL (and prints why) on failure.
raw_bench_connection *raw_bench_open(const char *host, int port, const char *vhost, const char *user,
                                     const char *password);
/// The same over TLS with librabbitmq's own TLS socket (amqp_ssl_socket_new), trusting `ca_file`
/// and verifying the peer and its name; a NULL `ca_file` is plain TCP.
raw_bench_connection *raw_bench_open_tls(const char *host, int port, const char *vhost, const char *user,
                                         const char *password, const char *ca_file);
void raw_bench_close(raw_bench_connection *connection);

/// Publishes `count` messages of `body_size` bytes to `queue` through the default exchange with
/// amqp_basic_publish in a loop, then waits for a passive queue.declare so everything was
/// written. Returns 0 on success.
int raw_bench_publish(raw_bench_connection *connection, const char *queue, size_t body_size, uint64_t count);

/// Consumes `count` messages from `queue` with amqp_consume_message. `ack_every` 0 = no-ack
/// consumer; 1 = amqp_basic_ack per message; N = one multiple ack every N messages. Ends with a
/// passive queue.declare so every ack was written. Returns 0 on success.
int raw_bench_consume(raw_bench_connection *connection, const char *queue, uint16_t prefetch, uint32_t ack_every,
                      uint64_t count);

/// Publishes with publisher confirms, keeping at most `window` unconfirmed; confirms are read
/// with amqp_simple_wait_frame. Returns 0 on success.
int raw_bench_publish_confirmed(raw_bench_connection *connection, const char *queue, size_t body_size,
                                uint64_t count, uint32_t window);

/// Round-trip latency: publishes on `publisher` one message at a time and waits for it on
/// `consumer` (no-ack), writing each round trip in nanoseconds to `latencies`.
int raw_bench_latency(raw_bench_connection *publisher, raw_bench_connection *consumer, const char *queue,
                      size_t body_size, uint64_t count, uint64_t *latencies);

/// Publishes `count` copies of an event's JSON `body` to `queue` the way the event layer's defaults
/// do (persistent, mandatory, content type, type, app id, an `x-schema-version` header, a message
/// id, correlation id and timestamp per message), with
/// confirms and at most `window` unconfirmed. Returns 0 on success.
int raw_bench_publish_events(raw_bench_connection *connection, const char *queue, const void *body, size_t body_size,
                             const char *type, uint64_t count, uint32_t window);

/// Request/reply over direct reply-to, one request at a time: `requester` consumes
/// amq.rabbitmq.reply-to (no-ack) and publishes each request to `queue`; `responder` consumes it,
/// publishes the reply to its reply_to with its correlation id and acks; the requester reads the
/// reply. Writes each round trip in nanoseconds to `latencies`.
int raw_bench_request_reply(raw_bench_connection *requester, raw_bench_connection *responder, const char *queue,
                            const void *body, size_t body_size, uint64_t count, uint64_t *latencies);

#endif
