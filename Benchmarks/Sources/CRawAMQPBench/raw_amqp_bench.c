#include "raw_amqp_bench.h"

#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/ssl_socket.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct raw_bench_connection {
    amqp_connection_state_t state;
};

static const amqp_channel_t channel = 1;

static int check_reply(amqp_rpc_reply_t reply, const char *what) {
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return 0;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        fprintf(stderr, "raw C: %s: %s\n", what, amqp_error_string2(reply.library_error));
    } else {
        fprintf(stderr, "raw C: %s: broker error\n", what);
    }
    return -1;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

raw_bench_connection *raw_bench_open(const char *host, int port, const char *vhost, const char *user,
                                     const char *password) {
    return raw_bench_open_tls(host, port, vhost, user, password, NULL);
}

raw_bench_connection *raw_bench_open_tls(const char *host, int port, const char *vhost, const char *user,
                                         const char *password, const char *ca_file) {
    amqp_connection_state_t state = amqp_new_connection();
    amqp_socket_t *socket;
    if (ca_file) {
        // librabbitmq's own TLS socket, verifying the peer and its name.
        socket = amqp_ssl_socket_new(state);
        if (socket && amqp_ssl_socket_set_cacert(socket, ca_file) != AMQP_STATUS_OK) socket = NULL;
    } else {
        socket = amqp_tcp_socket_new(state);
    }
    if (!socket || amqp_socket_open(socket, host, port) != AMQP_STATUS_OK) {
        fprintf(stderr, "raw C: cannot connect to %s:%d\n", host, port);
        amqp_destroy_connection(state);
        return NULL;
    }
    if (check_reply(amqp_login(state, vhost, 0, 131072, 60, AMQP_SASL_METHOD_PLAIN, user, password), "login") ||
        (amqp_channel_open(state, channel), check_reply(amqp_get_rpc_reply(state), "channel.open"))) {
        amqp_destroy_connection(state);
        return NULL;
    }
    raw_bench_connection *connection = malloc(sizeof *connection);
    connection->state = state;
    return connection;
}

void raw_bench_close(raw_bench_connection *connection) {
    if (!connection) return;
    amqp_channel_close(connection->state, channel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(connection->state, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(connection->state);
    free(connection);
}

static int sync_queue(raw_bench_connection *connection, const char *queue) {
    amqp_queue_declare(connection->state, channel, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    int result = check_reply(amqp_get_rpc_reply(connection->state), "queue.declare");
    amqp_maybe_release_buffers(connection->state);
    return result;
}

int raw_bench_publish(raw_bench_connection *connection, const char *queue, size_t body_size, uint64_t count) {
    char *body = malloc(body_size ? body_size : 1);
    memset(body, 'a', body_size);
    amqp_bytes_t bytes = {body_size, body};
    amqp_bytes_t routing_key = amqp_cstring_bytes(queue);
    for (uint64_t i = 0; i < count; i++) {
        int status = amqp_basic_publish(connection->state, channel, amqp_empty_bytes, routing_key, 0, 0, NULL, bytes);
        if (status != AMQP_STATUS_OK) {
            fprintf(stderr, "raw C: publish: %s\n", amqp_error_string2(status));
            free(body);
            return -1;
        }
    }
    free(body);
    return sync_queue(connection, queue);
}

int raw_bench_consume(raw_bench_connection *connection, const char *queue, uint16_t prefetch, uint32_t ack_every,
                      uint64_t count) {
    amqp_connection_state_t state = connection->state;
    amqp_basic_qos(state, channel, 0, prefetch, 0);
    if (check_reply(amqp_get_rpc_reply(state), "basic.qos")) return -1;
    amqp_basic_consume_ok_t *ok = amqp_basic_consume(state, channel, amqp_cstring_bytes(queue), amqp_empty_bytes, 0,
                                                     ack_every == 0, 0, amqp_empty_table);
    if (check_reply(amqp_get_rpc_reply(state), "basic.consume")) return -1;
    amqp_bytes_t tag = amqp_bytes_malloc_dup(ok->consumer_tag);

    for (uint64_t received = 1; received <= count; received++) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(state);
        amqp_rpc_reply_t reply = amqp_consume_message(state, &envelope, NULL, 0);
        if (check_reply(reply, "consume")) return -1;
        if (ack_every == 1) {
            amqp_basic_ack(state, channel, envelope.delivery_tag, 0);
        } else if (ack_every > 1 && (received % ack_every == 0 || received == count)) {
            amqp_basic_ack(state, channel, envelope.delivery_tag, 1);
        }
        amqp_destroy_envelope(&envelope);
    }
    amqp_basic_cancel(state, channel, tag);
    amqp_bytes_free(tag);
    if (check_reply(amqp_get_rpc_reply(state), "basic.cancel")) return -1;
    return sync_queue(connection, queue);
}

int raw_bench_publish_confirmed(raw_bench_connection *connection, const char *queue, size_t body_size,
                                uint64_t count, uint32_t window) {
    amqp_connection_state_t state = connection->state;
    amqp_confirm_select(state, channel);
    if (check_reply(amqp_get_rpc_reply(state), "confirm.select")) return -1;
    char *body = malloc(body_size ? body_size : 1);
    memset(body, 'a', body_size);
    amqp_bytes_t bytes = {body_size, body};
    amqp_bytes_t routing_key = amqp_cstring_bytes(queue);
    uint64_t published = 0, confirmed = 0;
    while (confirmed < count) {
        while (published < count && published - confirmed < window) {
            if (amqp_basic_publish(state, channel, amqp_empty_bytes, routing_key, 0, 0, NULL, bytes) != AMQP_STATUS_OK) {
                free(body);
                return -1;
            }
            published++;
        }
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(state, &frame) != AMQP_STATUS_OK) {
            free(body);
            return -1;
        }
        if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = frame.payload.method.decoded;
            confirmed = ack->delivery_tag;  // single or multiple: everything up to the tag is settled
        } else if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            fprintf(stderr, "raw C: broker nacked a publish\n");
            free(body);
            return -1;
        }
        amqp_maybe_release_buffers(state);
    }
    free(body);
    return 0;
}

int raw_bench_latency(raw_bench_connection *publisher, raw_bench_connection *consumer, const char *queue,
                      size_t body_size, uint64_t count, uint64_t *latencies) {
    amqp_basic_consume(consumer->state, channel, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 1, 0,
                       amqp_empty_table);
    if (check_reply(amqp_get_rpc_reply(consumer->state), "basic.consume")) return -1;
    char *body = malloc(body_size ? body_size : 1);
    memset(body, 'a', body_size);
    amqp_bytes_t bytes = {body_size, body};
    for (uint64_t i = 0; i < count; i++) {
        uint64_t start = now_ns();
        if (amqp_basic_publish(publisher->state, channel, amqp_empty_bytes, amqp_cstring_bytes(queue), 0, 0, NULL,
                               bytes) != AMQP_STATUS_OK) {
            free(body);
            return -1;
        }
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(consumer->state);
        if (check_reply(amqp_consume_message(consumer->state, &envelope, NULL, 0), "consume")) {
            free(body);
            return -1;
        }
        latencies[i] = now_ns() - start;
        amqp_destroy_envelope(&envelope);
    }
    free(body);
    return 0;
}

int raw_bench_publish_events(raw_bench_connection *connection, const char *queue, const void *body, size_t body_size,
                             const char *type, uint64_t count, uint32_t window) {
    amqp_connection_state_t state = connection->state;
    amqp_confirm_select(state, channel);
    if (check_reply(amqp_get_rpc_reply(state), "confirm.select")) return -1;
    amqp_bytes_t bytes = {body_size, (void *)body};
    amqp_bytes_t routing_key = amqp_cstring_bytes(queue);
    amqp_basic_properties_t properties;
    memset(&properties, 0, sizeof properties);
    properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TYPE_FLAG |
                        AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_HEADERS_FLAG |
                        AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
    properties.content_type = amqp_cstring_bytes("application/json");
    properties.delivery_mode = 2;
    properties.type = amqp_cstring_bytes(type);
    properties.app_id = amqp_cstring_bytes("amqp-bench");
    // The same envelope as the event layer's: a schema version header, a correlation id.
    amqp_table_entry_t header;
    header.key = amqp_cstring_bytes("x-schema-version");
    header.value.kind = AMQP_FIELD_KIND_I32;
    header.value.value.i32 = 1;
    properties.headers.num_entries = 1;
    properties.headers.entries = &header;
    char message_id[32];
    uint64_t published = 0, confirmed = 0;
    while (confirmed < count) {
        while (published < count && published - confirmed < window) {
            snprintf(message_id, sizeof message_id, "m-%llu", (unsigned long long)published);
            properties.message_id = amqp_cstring_bytes(message_id);
            properties.correlation_id = properties.message_id;
            properties.timestamp = (uint64_t)time(NULL);
            if (amqp_basic_publish(state, channel, amqp_empty_bytes, routing_key, 1, 0, &properties, bytes) !=
                AMQP_STATUS_OK) {
                return -1;
            }
            published++;
        }
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(state, &frame) != AMQP_STATUS_OK) return -1;
        if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = frame.payload.method.decoded;
            confirmed = ack->delivery_tag;
        } else if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            fprintf(stderr, "raw C: broker nacked a publish\n");
            return -1;
        }
        amqp_maybe_release_buffers(state);
    }
    return 0;
}

int raw_bench_request_reply(raw_bench_connection *requester, raw_bench_connection *responder, const char *queue,
                            const void *body, size_t body_size, uint64_t count, uint64_t *latencies) {
    amqp_bytes_t reply_to = amqp_cstring_bytes("amq.rabbitmq.reply-to");
    amqp_basic_consume(requester->state, channel, reply_to, amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    if (check_reply(amqp_get_rpc_reply(requester->state), "basic.consume reply-to")) return -1;
    amqp_basic_qos(responder->state, channel, 0, 1, 0);
    if (check_reply(amqp_get_rpc_reply(responder->state), "basic.qos")) return -1;
    amqp_basic_consume(responder->state, channel, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (check_reply(amqp_get_rpc_reply(responder->state), "basic.consume")) return -1;
    amqp_bytes_t bytes = {body_size, (void *)body};
    char correlation[32];
    for (uint64_t i = 0; i < count; i++) {
        uint64_t start = now_ns();
        snprintf(correlation, sizeof correlation, "r-%llu", (unsigned long long)i);
        amqp_basic_properties_t request;
        memset(&request, 0, sizeof request);
        request._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
        request.content_type = amqp_cstring_bytes("application/json");
        request.reply_to = reply_to;
        request.correlation_id = amqp_cstring_bytes(correlation);
        if (amqp_basic_publish(requester->state, channel, amqp_empty_bytes, amqp_cstring_bytes(queue), 1, 0, &request,
                               bytes) != AMQP_STATUS_OK) {
            return -1;
        }
        // The responder: take the request, answer to its reply_to with its correlation id, ack it.
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(responder->state);
        if (check_reply(amqp_consume_message(responder->state, &envelope, NULL, 0), "consume request")) return -1;
        amqp_basic_properties_t reply;
        memset(&reply, 0, sizeof reply);
        reply._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
        reply.content_type = amqp_cstring_bytes("application/json");
        reply.correlation_id = envelope.message.properties.correlation_id;
        if (amqp_basic_publish(responder->state, channel, amqp_empty_bytes, envelope.message.properties.reply_to, 0, 0,
                               &reply, envelope.message.body) != AMQP_STATUS_OK) {
            return -1;
        }
        amqp_basic_ack(responder->state, channel, envelope.delivery_tag, 0);
        amqp_destroy_envelope(&envelope);
        // The requester: its reply.
        amqp_envelope_t answer;
        amqp_maybe_release_buffers(requester->state);
        if (check_reply(amqp_consume_message(requester->state, &answer, NULL, 0), "consume reply")) return -1;
        latencies[i] = now_ns() - start;
        amqp_destroy_envelope(&answer);
    }
    return 0;
}
