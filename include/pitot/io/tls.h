/* tls: OpenSSL for both sides of pitot. The listener: one context per
 * certificate (tls.certificates: the first is the default, the others are
 * chosen by SNI), TLS 1.2 or 1.3 and up (tls.min_version), Mozilla's
 * "intermediate" ciphers, ALPN http/1.1, replaced whole by a reload. Clients
 * (https backends, the trace collector): the certificate verified unless
 * tls.verify is false, SNI and a host-name check, an optional client
 * certificate, the last session kept for resumption. And what a failed
 * handshake was: a bounded reason for the metric, words for the log. */
#ifndef PITOT_IO_TLS_H
#define PITOT_IO_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* Why a client's handshake failed: X(ID, label value), the label of
 * pitot_tls_handshake_failures_total{reason}. Named after the TLS alert where
 * there is one. */
#define TLS_FAIL_LIST(X)                                                                           \
    X(PROTOCOL_VERSION, "protocol_version") /* TLS 1.1 or older, or below tls.min_version */       \
    X(NO_SHARED_CIPHER, "no_shared_cipher") /* nothing in common with the cipher list */           \
    X(NO_APPLICATION_PROTOCOL, "no_application_protocol") /* ALPN without http/1.1 */              \
    X(UNKNOWN_CA, "unknown_ca")           /* the client does not trust pitot's issuer */           \
    X(BAD_CERTIFICATE, "bad_certificate") /* the client refused the certificate otherwise */       \
    X(HTTP_REQUEST, "http_request")       /* plain HTTP sent to the TLS listener */                \
    X(TIMEOUT, "timeout")                 /* not complete within limits.header_timeout */          \
    X(CLOSED, "eof")                      /* the client closed (or reset) during it */             \
    X(OTHER, "other")                     /* anything else: malformed, internal */

enum tls_fail {
#define TLS_FAIL_ENUM(id, label) TLS_FAIL_##id,
    TLS_FAIL_LIST(TLS_FAIL_ENUM)
#undef TLS_FAIL_ENUM
        TLS_FAIL__COUNT
};

/* The label value of a failure reason ("protocol_version", ...); "unknown"
 * out of range. */
const char *tls_fail_label(enum tls_fail why);

struct bufferevent;
struct event_base;
struct cfg;
struct cfg_tls_client;
struct tls_server;
struct tls_client;

/* Mozilla's "intermediate" configuration (server-side TLS guidelines 5.7):
 * TLS 1.2 ciphers (forward secret, AEAD only), TLS 1.3 suites, key exchange
 * groups. The client chooses among them. */
#define TLS_CIPHERS_12                                                                             \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_CIPHERS_13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:prime256v1:secp384r1"

/* Loads every certificate, key and CA file of c the way the listener and
 * the clients will (c not yet expanded or expanded, either): readable, PEM,
 * each key matching its certificate and without a passphrase. Returns 0, or
 * -1 with a message and in *line the config line it is about (0: from the
 * command line, or no line). */
int tls_check(const struct cfg *c, char *err, size_t errlen, unsigned *line);

/* ---- the listener ------------------------------------------------------ */

/* The listener's contexts for c->tls_certs (at least one; c borrowed for the
 * life of the server, for reloads and the log level). NULL with a message. */
struct tls_server *tls_server_new(const struct cfg *c, char *err, size_t errlen);

/* Loads the certificates again from their files. When all of them load,
 * handshakes from now on use them; connections made before (or still
 * handshaking) keep what they have. Otherwise nothing changes: -1 with a
 * message. */
int tls_server_reload(struct tls_server *s, char *err, size_t errlen);

/* The configuration s reads from now on (a reload's, which its loop holds
 * as long as s uses it); the next tls_server_reload loads its files. */
void tls_server_set_cfg(struct tls_server *s, const struct cfg *c);

void tls_server_free(struct tls_server *s);

/* A server-side TLS bufferevent on an accepted socket fd (TCP_NODELAY set
 * by the caller), its handshake pending: BEV_EVENT_CONNECTED when it is
 * done. It closes fd when freed. A client that closes without close_notify
 * is an EOF. NULL on failure (fd is then not closed). */
struct bufferevent *tls_server_bev(struct tls_server *s, struct event_base *base, int fd);

/* Why a client's handshake failed, from the event (BEV_EVENT_ERROR or EOF)
 * that ended it; the errors of the bufferevent are consumed. detail gets
 * OpenSSL's words ("unsupported protocol") or "" (may be NULL). */
enum tls_fail tls_handshake_reason(struct bufferevent *bev, short what, char *detail, size_t cap);

/* Logs a failed handshake of client `peer` at level info, at most one line
 * per second (the next line says how many were left out); the metric counts
 * every one. */
void tls_server_log_failure(struct tls_server *s, const char *peer, enum tls_fail why,
                            const char *detail);

/* ---- clients ----------------------------------------------------------- */

/* A client context for a server reached as `host` (a name or an IP
 * address), checked as t says (t borrowed for the life of the client): its
 * CA file or the system's, the name t->server_name or else host (sent as SNI
 * unless it is an IP address), its client certificate. NULL with a message. */
struct tls_client *tls_client_new(const struct cfg_tls_client *t, const char *host, char *err,
                                  size_t errlen);

/* Loads the CA and client certificate files again; on success new
 * connections use them (and the kept session is dropped), else -1 with a
 * message and nothing changes. */
int tls_client_reload(struct tls_client *tc, char *err, size_t errlen);

void tls_client_free(struct tls_client *tc);

/* A client-side TLS bufferevent without a socket: connect it with
 * bufferevent_socket_connect(), then set TCP_NODELAY. BEV_EVENT_CONNECTED
 * comes once the handshake is done and the certificate verified. A server
 * that closes without close_notify is an EOF (framing tells a cut response).
 * NULL on failure. */
struct bufferevent *tls_client_bev(struct tls_client *tc, struct event_base *base);

/* The server name checked (and sent as SNI) by tc. */
const char *tls_client_name(const struct tls_client *tc);

/* ---- both -------------------------------------------------------------- */

/* True for a TLS bufferevent. */
bool tls_bev_is_tls(struct bufferevent *bev);

/* After BEV_EVENT_ERROR on a client TLS bufferevent: true when TLS failed
 * (a certificate not verified, an alert, a protocol error) rather than the
 * socket, with the reason in words into out ("certificate verify failed:
 * unable to get local issuer certificate"). The bufferevent's errors are
 * consumed. False for a plain bufferevent. */
bool tls_bev_error(struct bufferevent *bev, char *out, size_t cap);

/* Sends close_notify on a TLS connection whose output was all written (an
 * orderly end); nothing for a plain one. Never blocks. */
void tls_close_notify(struct bufferevent *bev);

#endif
