#ifndef CRABBITMQ_SHIM_H
#define CRABBITMQ_SHIM_H

// librabbitmq 0.12+ installs its headers under rabbitmq-c/ and deprecates the
// old top-level names; 0.11 (Debian 12) only has the top-level ones.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/types.h>
#include <sys/time.h>

#if defined(__linux__)
#include <sys/prctl.h>
#elif defined(__APPLE__)
#include <pthread.h>
#endif

// amqp_login_with_properties is variadic, which Swift cannot call.
static inline amqp_rpc_reply_t camqp_login_plain(amqp_connection_state_t state,
                                                 const char *vhost,
                                                 int channel_max,
                                                 int frame_max,
                                                 int heartbeat,
                                                 const amqp_table_t *properties,
                                                 const char *user,
                                                 const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                      properties, AMQP_SASL_METHOD_PLAIN, user, password);
}

// Names the calling thread, as top, perf and debuggers show it. prctl is variadic.
static inline void camqp_set_thread_name(const char *name) {
#if defined(__linux__)
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
#elif defined(__APPLE__)
    pthread_setname_np(name);
#else
    (void)name;
#endif
}

// librabbitmq's private socket layout (amqp_socket.h), the same from 0.6 to 0.16: every socket
// starts with a pointer to its class's table of functions. The client puts a table of its own
// on the sockets it creates, to see every byte received before librabbitmq parses it.
typedef struct camqp_socket_class {
    ssize_t (*send)(void *, const void *, size_t, int);
    ssize_t (*recv)(void *, void *, size_t, int);
    int (*open)(void *, const char *, int, const struct timeval *);
    int (*close)(void *, int);
    int (*get_sockfd)(void *);
    void (*delete_socket)(void *);
} camqp_socket_class;

typedef struct camqp_socket_header {
    const camqp_socket_class *klass;
} camqp_socket_header;

// TLS: the client runs its own OpenSSL session on librabbitmq's TCP socket, so that its batched
// writes and librabbitmq's own reads and writes go through one SSL object. These wrap the
// OpenSSL macros Swift cannot call.
static inline int camqp_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline int camqp_ssl_ctx_set_min_tls12(SSL_CTX *ctx) {
    return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}

static inline long camqp_ssl_ctx_set_partial_writes(SSL_CTX *ctx) {
    return SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

// amqp_login_with_properties with SASL EXTERNAL: the identity is the client certificate's.
static inline amqp_rpc_reply_t camqp_login_external(amqp_connection_state_t state,
                                                    const char *vhost,
                                                    int channel_max,
                                                    int frame_max,
                                                    int heartbeat,
                                                    const amqp_table_t *properties,
                                                    const char *identity) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                      properties, AMQP_SASL_METHOD_EXTERNAL, identity);
}

#endif
