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

#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#if defined(__linux__)
#include <sys/prctl.h>
// ppoll is declared only with _GNU_SOURCE, which a module's header cannot rely on.
extern int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *sigmask);
#elif defined(__APPLE__)
#include <pthread.h>
#endif

// poll with a timeout in microseconds (negative: none), for waits shorter than a millisecond.
// Where ppoll is missing, the timeout is rounded up to whole milliseconds.
static inline int camqp_poll_microseconds(struct pollfd *fds, nfds_t count, int64_t timeout_us) {
#if defined(__linux__)
    if (timeout_us < 0) return ppoll(fds, count, NULL, NULL);
    struct timespec timeout = {(time_t)(timeout_us / 1000000), (long)(timeout_us % 1000000) * 1000};
    return ppoll(fds, count, &timeout, NULL);
#else
    if (timeout_us < 0) return poll(fds, count, -1);
    int64_t ms = (timeout_us + 999) / 1000;
    return poll(fds, count, ms > 0x7fffffff ? 0x7fffffff : (int)ms);
#endif
}

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

// On the SSL itself: SSL_new copies a context's settings, so the context's would come too late.
// Each returns 1 on success.
static inline int camqp_ssl_set_min_tls12(SSL *ssl) {
    return (int)SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
}

static inline int camqp_ssl_set_partial_writes(SSL *ssl) {
    const long modes = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
    return (SSL_set_mode(ssl, modes) & modes) == modes;
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

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a connection the peer has
// closed and kills the process. This BIO is the same but sends with MSG_NOSIGNAL (as
// librabbitmq's own TLS socket does). Use it from one Swift file only: the method is static.
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
// Darwin has no MSG_NOSIGNAL: there the socket itself is told not to raise SIGPIPE
// (camqp_socket_no_sigpipe, SO_NOSIGPIPE), and the flag is 0.
#ifdef MSG_NOSIGNAL
#define CAMQP_NOSIGNAL MSG_NOSIGNAL
#else
#define CAMQP_NOSIGNAL 0
#endif

// The flag for send(2) that keeps a write to a closed connection from raising SIGPIPE.
static inline int camqp_nosignal_flag(void) { return CAMQP_NOSIGNAL; }

// Where send(2) has no such flag, sets SO_NOSIGPIPE on the socket; elsewhere does nothing.
static inline void camqp_socket_no_sigpipe(int fd) {
#ifdef SO_NOSIGPIPE
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
#else
    (void)fd;
#endif
}

static inline int camqp_bio_write(BIO *bio, const char *data, int length) {
    int fd = -1;
    BIO_get_fd(bio, &fd);
    BIO_clear_retry_flags(bio);
    ssize_t sent = send(fd, data, (size_t)length, CAMQP_NOSIGNAL);
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_write(bio);
    }
    return (int)sent;
}

static inline BIO_METHOD **camqp_bio_method_slot(void) {
    static BIO_METHOD *method;
    return &method;
}

static inline void camqp_bio_method_make(void) {
    const BIO_METHOD *socket = BIO_s_socket();
    BIO_METHOD *method = BIO_meth_new(BIO_TYPE_SOCKET, "amqp-swift socket");
    if (method == NULL) return;
    BIO_meth_set_write(method, camqp_bio_write);
    BIO_meth_set_read(method, BIO_meth_get_read(socket));
    BIO_meth_set_puts(method, BIO_meth_get_puts(socket));
    BIO_meth_set_gets(method, BIO_meth_get_gets(socket));
    BIO_meth_set_ctrl(method, BIO_meth_get_ctrl(socket));
    BIO_meth_set_create(method, BIO_meth_get_create(socket));
    BIO_meth_set_destroy(method, BIO_meth_get_destroy(socket));
    BIO_meth_set_callback_ctrl(method, BIO_meth_get_callback_ctrl(socket));
    *camqp_bio_method_slot() = method;
}

// Attaches `ssl` to the socket `fd` through the BIO above. Returns 1 on success.
static inline int camqp_ssl_set_socket(SSL *ssl, int fd) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, camqp_bio_method_make);
    if (*camqp_bio_method_slot() == NULL) return 0;
    BIO *bio = BIO_new(*camqp_bio_method_slot());
    if (bio == NULL) return 0;
    BIO_set_fd(bio, fd, BIO_NOCLOSE);
    SSL_set_bio(ssl, bio, bio);
    return 1;
}

#endif
