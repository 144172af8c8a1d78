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

#endif
