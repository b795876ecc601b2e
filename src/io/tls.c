/* tls: OpenSSL contexts for the listener and for https backends, the
 * bufferevents that wrap them, and what a failed handshake was. A context
 * is built whole from its files and swapped only once it loaded, so a bad
 * file on reload never leaves pitot without certificates. */
#include "pitot/io/tls.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/util/log.h"

/* Sessions the listener keeps for resumption (TLS 1.2 ids and TLS 1.3
 * stateful tickets): bounded, about 1 KiB each. */
#define TLS_SESSION_CACHE 4096
#define TLS_LOG_INTERVAL_US 1000000ull /* one handshake failure line a second */

static const char *const tls_fail_labels[TLS_FAIL__COUNT] = {
#define TLS_FAIL_ROW(id, label) label,
    TLS_FAIL_LIST(TLS_FAIL_ROW)
#undef TLS_FAIL_ROW
};

const char *tls_fail_label(enum tls_fail why)
{
    return (unsigned)why < TLS_FAIL__COUNT ? tls_fail_labels[why] : "unknown";
}

static const unsigned char tls_alpn_http11[] = "\x08http/1.1";

/* ---- errors ------------------------------------------------------------ */

/* OpenSSL's words for its oldest queued error (the cause, usually), then
 * the queue is emptied; "unknown error" when there is none. */
static const char *tls_err_text(char *out, size_t cap)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    snprintf(out, cap, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return out;
}

/* A passphrase would be asked on the terminal: never, the key fails to load. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* Readable at all: a clear "No such file or directory" before OpenSSL's
 * own words for what it could not parse. */
static int tls_readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "%s '%s': cannot read: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* A certificate chain and its key into ctx; `what` names the pair in
 * messages ("tls.certificates[0]"). */
static int tls_load_pair(SSL_CTX *ctx, const char *what, const char *cert, const char *key,
                         char *err, size_t errlen)
{
    char msg[160], w[96];
    unsigned long e;

    snprintf(w, sizeof(w), "%s: certificate", what);
    if (tls_readable(w, cert, err, errlen) != 0)
        return -1;
    snprintf(w, sizeof(w), "%s: key", what);
    if (tls_readable(w, key, err, errlen) != 0)
        return -1;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "%s: certificate '%s': not a PEM certificate (%s)", what, cert,
                 tls_err_text(msg, sizeof(msg)));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "%s: key '%s' does not match the certificate '%s'", what, key,
                     cert);
        } else {
            snprintf(err, errlen, "%s: key '%s': not a PEM private key without a passphrase (%s)",
                     what, key, tls_err_text(msg, sizeof(msg)));
        }
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: key '%s' does not match the certificate '%s'", what, key, cert);
        return -1;
    }
    return 0;
}

/* ---- the listener ------------------------------------------------------ */

/* One generation of the listener's contexts. */
struct tls_set {
    SSL_CTX *ctx[CFG_MAX_CERTS]; /* owned references; [0] the default */
    X509 *x509[CFG_MAX_CERTS];   /* borrowed from ctx[i]: its leaf certificate */
    size_t n;
};

struct tls_server {
    const struct cfg *cfg; /* borrowed */
    struct tls_set *set;   /* owned: the contexts new connections get */
    uint64_t log_us;       /* the last failure line, clk_now_us() */
    unsigned log_skipped;  /* failures not logged since that line */
};

static void tls_set_free(struct tls_set *set)
{
    size_t i;

    if (set == NULL)
        return;
    for (i = 0; i < set->n; i++)
        SSL_CTX_free(set->ctx[i]); /* connections hold references of their own */
    free(set);
}

/* SNI: the first certificate whose names match (wildcards as browsers do),
 * else the default. The SSL started on some generation's default context;
 * the match comes from the current one. */
static int tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    size_t i;

    if (name == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    for (i = 0; i < s->set->n; i++) {
        if (X509_check_host(s->set->x509[i], name, 0, 0, NULL) == 1) {
            if (SSL_get_SSL_CTX(ssl) != s->set->ctx[i] &&
                SSL_set_SSL_CTX(ssl, s->set->ctx[i]) == NULL)
                return SSL_TLSEXT_ERR_ALERT_FATAL;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK; /* the default certificate, as when no name came */
}

/* ALPN: http/1.1, the only protocol pitot speaks; a client that offers only
 * others (h2 alone) gets the no_application_protocol alert. */
static int tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    unsigned char *sel;

    if (SSL_select_next_proto(&sel, outlen, tls_alpn_http11, sizeof(tls_alpn_http11) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The settings every context of the listener shares. */
static SSL_CTX *tls_server_ctx(const struct cfg *c, struct tls_server *s)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        return NULL;
    if (SSL_CTX_set_min_proto_version(
            ctx, c->tls_min_version == CFG_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERS_13) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1 ||
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pitot", 5) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* No renegotiation (a client could make the server work hard for free),
     * no stateless tickets (their key would live until the next reload: the
     * session cache serves resumption instead), the client's cipher order,
     * and a close without close_notify is an EOF: HTTP framing tells a cut. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_sess_set_cache_size(ctx, TLS_SESSION_CACHE);
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, tls_sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    return ctx;
}

/* A complete generation from c's files, or NULL with a message and the
 * config line of the certificate that failed. */
static struct tls_set *tls_set_load(const struct cfg *c, struct tls_server *s, char *err,
                                    size_t errlen, unsigned *line)
{
    struct tls_set *set = calloc(1, sizeof(*set));
    char what[48];
    size_t i;

    *line = 0;
    if (set == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (i = 0; i < c->ntls_certs; i++) {
        const struct cfg_tls_cert *ct = &c->tls_certs[i];

        *line = ct->line;
        set->ctx[i] = tls_server_ctx(c, s);
        if (set->ctx[i] == NULL) {
            snprintf(err, errlen, "tls: cannot set up OpenSSL: %s", tls_err_text(what, 48));
            tls_set_free(set);
            return NULL;
        }
        set->n = i + 1;
        if (ct->line)
            snprintf(what, sizeof(what), "tls.certificates[%zu]", i);
        else
            snprintf(what, sizeof(what), "--tls-cert/--tls-key");
        if (tls_load_pair(set->ctx[i], what, ct->cert, ct->key, err, errlen) != 0) {
            tls_set_free(set);
            return NULL;
        }
        set->x509[i] = SSL_CTX_get0_certificate(set->ctx[i]);
    }
    *line = 0;
    return set;
}

struct tls_server *tls_server_new(const struct cfg *c, char *err, size_t errlen)
{
    struct tls_server *s = calloc(1, sizeof(*s));
    unsigned line;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = c;
    s->set = tls_set_load(c, s, err, errlen, &line);
    if (s->set == NULL || s->set->n == 0) {
        if (s->set)
            snprintf(err, errlen, "tls: no certificate");
        tls_set_free(s->set);
        free(s);
        return NULL;
    }
    return s;
}

int tls_server_reload(struct tls_server *s, char *err, size_t errlen)
{
    unsigned line;
    struct tls_set *set = tls_set_load(s->cfg, s, err, errlen, &line);

    if (set == NULL)
        return -1;
    tls_set_free(s->set);
    s->set = set;
    return 0;
}

void tls_server_set_cfg(struct tls_server *s, const struct cfg *c)
{
    s->cfg = c;
}

void tls_server_free(struct tls_server *s)
{
    if (s == NULL)
        return;
    tls_set_free(s->set);
    free(s);
}

struct bufferevent *tls_server_bev(struct tls_server *s, struct event_base *base, int fd)
{
    SSL *ssl = SSL_new(s->set->ctx[0]);
    struct bufferevent *bev;

    if (ssl == NULL)
        return NULL;
    /* On failure libevent frees ssl (CLOSE_ON_FREE) but leaves fd alone. */
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev != NULL)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* ---- reasons ----------------------------------------------------------- */

/* The reason of one OpenSSL error code, or OTHER. */
static enum tls_fail tls_reason_of(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return TLS_FAIL_OTHER;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: return TLS_FAIL_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE: return TLS_FAIL_NO_SHARED_CIPHER;
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL: return TLS_FAIL_NO_APPLICATION_PROTOCOL;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA: return TLS_FAIL_UNKNOWN_CA;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE: return TLS_FAIL_BAD_CERTIFICATE;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST: return TLS_FAIL_HTTP_REQUEST;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING: return TLS_FAIL_CLOSED;
    default: return TLS_FAIL_OTHER;
    }
}

/* The OpenSSL errors libevent kept for bev (at most three), oldest first;
 * the SSL_get_error() codes it keeps among them and system errors (the
 * socket failed: not a TLS matter) are left out. */
static size_t tls_bev_codes(struct bufferevent *bev, unsigned long *codes, size_t cap)
{
    unsigned long e, tmp[8];
    size_t n = 0, i;

    while ((e = bufferevent_get_openssl_error(bev)) != 0 && n < 8)
        if (ERR_GET_LIB(e) != 0 && !ERR_SYSTEM_ERROR(e)) /* not an SSL_ERROR_* value */
            tmp[n++] = e;
    /* libevent hands them back newest first */
    for (i = 0; i < n && i < cap; i++)
        codes[i] = tmp[n - 1 - i];
    return n < cap ? n : cap;
}

enum tls_fail tls_handshake_reason(struct bufferevent *bev, short what, char *detail, size_t cap)
{
    unsigned long codes[8];
    size_t n = tls_bev_codes(bev, codes, 8), i;
    enum tls_fail why = TLS_FAIL_OTHER;
    const char *r;

    if (detail && cap)
        detail[0] = '\0';
    if (n == 0) /* the socket ended it: closed or reset */
        return (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) ? TLS_FAIL_CLOSED : TLS_FAIL_OTHER;
    for (i = 0; i < n && why == TLS_FAIL_OTHER; i++)
        why = tls_reason_of(codes[i]);
    r = ERR_reason_error_string(codes[why == TLS_FAIL_OTHER ? 0 : i - 1]);
    if (detail && cap)
        snprintf(detail, cap, "%s", r ? r : "");
    return why;
}

void tls_server_log_failure(struct tls_server *s, const char *peer, enum tls_fail why,
                            const char *detail)
{
    uint64_t now = clk_now_us();
    char more[80] = "";

    if (!log_on(LOG_LVL_INFO))
        return;
    if (s->log_us != 0 && now - s->log_us < TLS_LOG_INTERVAL_US) {
        s->log_skipped++;
        return;
    }
    if (s->log_skipped)
        snprintf(more, sizeof(more), "; %u more failed handshake%s not logged", s->log_skipped,
                 s->log_skipped == 1 ? "" : "s");
    log_info("TLS handshake from %s failed: %s%s%s%s%s", peer, tls_fail_label(why),
             detail && detail[0] ? " (" : "", detail ? detail : "", detail && detail[0] ? ")" : "",
             more);
    s->log_us = now;
    s->log_skipped = 0;
}

/* ---- clients ----------------------------------------------------------- */

struct tls_client {
    const struct cfg_tls_client *t; /* borrowed */
    char name[CFG_HOST_MAX];        /* SNI and the name checked */
    bool ip;                        /* name is an IP address: checked as one, no SNI */
    SSL_CTX *ctx;                   /* owned */
    SSL_SESSION *session;           /* owned: the server's last, to resume with */
    pthread_mutex_t lock;           /* ctx and session: every loop connects with them,
                                       a reload and new sessions change them */
};

/* A new session from the server (after the handshake, or a TLS 1.3 ticket):
 * a copy is kept for the next connection, in place of the one before. A
 * copy, because OpenSSL marks a connection's own session not resumable when
 * the connection ends without close_notify, as a cancelled stream does. */
static int tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_client *tc = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    SSL_SESSION *copy;

    if (tc == NULL || (copy = SSL_SESSION_dup(sess)) == NULL)
        return 0;
    pthread_mutex_lock(&tc->lock);
    if (SSL_get_SSL_CTX(ssl) == tc->ctx) { /* not from before a reload */
        SSL_SESSION_free(tc->session);
        tc->session = copy;
        copy = NULL;
    }
    pthread_mutex_unlock(&tc->lock);
    SSL_SESSION_free(copy);
    return 0; /* sess stays OpenSSL's */
}

/* A client context from tc->t's files, or NULL with a message. */
static SSL_CTX *tls_client_ctx(struct tls_client *tc, char *err, size_t errlen)
{
    const struct cfg_tls_client *t = tc->t;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char msg[160];

    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_alpn_protos(ctx, tls_alpn_http11, sizeof(tls_alpn_http11) - 1) != 0) {
        snprintf(err, errlen, "cannot set up OpenSSL: %s", tls_err_text(msg, sizeof(msg)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* A backend that closes without close_notify (llama-server does, after
     * every stream) ends with an EOF, not an error. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    SSL_CTX_set_verify(ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (t->ca_file[0] != '\0') {
        if (tls_readable("tls.ca_file", t->ca_file, err, errlen) != 0)
            goto fail;
        if (SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1) {
            snprintf(err, errlen, "tls.ca_file '%s': no PEM certificate in it (%s)", t->ca_file,
                     tls_err_text(msg, sizeof(msg)));
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load the system's CA certificates: %s",
                 tls_err_text(msg, sizeof(msg)));
        goto fail;
    }
    if (t->cert[0] != '\0' &&
        tls_load_pair(ctx, "tls (client certificate)", t->cert, t->key, err, errlen) != 0)
        goto fail;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, tls_new_session_cb);
    SSL_CTX_set_app_data(ctx, tc);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_client *tls_client_new(const struct cfg_tls_client *t, const char *host, char *err,
                                  size_t errlen)
{
    struct tls_client *tc = calloc(1, sizeof(*tc));
    unsigned char a[16];

    if (tc == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tc->t = t;
    snprintf(tc->name, sizeof(tc->name), "%s", t->server_name[0] ? t->server_name : host);
    tc->ip = inet_pton(AF_INET, tc->name, a) == 1 || inet_pton(AF_INET6, tc->name, a) == 1;
    tc->ctx = tls_client_ctx(tc, err, errlen);
    if (tc->ctx == NULL) {
        free(tc);
        return NULL;
    }
    pthread_mutex_init(&tc->lock, NULL);
    return tc;
}

int tls_client_reload(struct tls_client *tc, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_client_ctx(tc, err, errlen);

    SSL_CTX *old;
    SSL_SESSION *sess;

    if (ctx == NULL)
        return -1;
    pthread_mutex_lock(&tc->lock);
    old = tc->ctx;
    sess = tc->session;
    tc->ctx = ctx;
    tc->session = NULL;
    pthread_mutex_unlock(&tc->lock);
    SSL_CTX_free(old); /* its connections hold their own references */
    SSL_SESSION_free(sess);
    return 0;
}

void tls_client_free(struct tls_client *tc)
{
    if (tc == NULL)
        return;
    SSL_CTX_set_app_data(tc->ctx, NULL);
    SSL_CTX_free(tc->ctx);
    SSL_SESSION_free(tc->session);
    pthread_mutex_destroy(&tc->lock);
    free(tc);
}

const char *tls_client_name(const struct tls_client *tc)
{
    return tc->name;
}

struct bufferevent *tls_client_bev(struct tls_client *tc, struct event_base *base)
{
    struct bufferevent *bev;
    SSL *ssl;

    pthread_mutex_lock(&tc->lock);
    ssl = SSL_new(tc->ctx);
    if (ssl != NULL && tc->session != NULL)
        (void)SSL_set_session(ssl, tc->session); /* a full handshake if refused */
    pthread_mutex_unlock(&tc->lock);
    if (ssl == NULL)
        return NULL;
    if (!tc->ip && SSL_set_tlsext_host_name(ssl, tc->name) != 1)
        goto fail;
    if (tc->t->verify) {
        if (tc->ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), tc->name) != 1
                   : SSL_set1_host(ssl, tc->name) != 1)
            goto fail;
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev != NULL)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev; /* on failure libevent freed ssl */
fail:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

/* ---- both -------------------------------------------------------------- */

bool tls_bev_is_tls(struct bufferevent *bev)
{
    return bufferevent_openssl_get_ssl(bev) != NULL;
}

bool tls_bev_error(struct bufferevent *bev, char *out, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    unsigned long codes[8];
    size_t n, i;
    long vr;
    const char *r;

    if (ssl == NULL)
        return false;
    n = tls_bev_codes(bev, codes, 8);
    vr = SSL_get_verify_result(ssl);
    for (i = 0; i < n; i++) {
        if (ERR_GET_LIB(codes[i]) == ERR_LIB_SSL &&
            ERR_GET_REASON(codes[i]) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
            snprintf(out, cap, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
            return true;
        }
    }
    if (n == 0)
        return false; /* the socket failed, not TLS */
    r = ERR_reason_error_string(codes[0]);
    snprintf(out, cap, "%s", r ? r : "TLS error");
    return true;
}

void tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl == NULL || !SSL_is_init_finished(ssl))
        return;
    /* One try on a non-blocking socket: sent, or dropped with the close. */
    (void)SSL_shutdown(ssl);
    ERR_clear_error();
}

/* ---- the check --------------------------------------------------------- */

int tls_check(const struct cfg *c, char *err, size_t errlen, unsigned *line)
{
    char msg[448];
    size_t i;

    *line = 0;
    if (c->ntls_certs > 0) {
        struct tls_server *s = calloc(1, sizeof(*s));
        struct tls_set *set;

        if (s == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        s->cfg = c;
        set = tls_set_load(c, s, err, errlen, line);
        free(s);
        if (set == NULL)
            return -1;
        tls_set_free(set);
    }
    for (i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *b = &c->backends[i];
        struct tls_client *tc;

        if (!b->https || b->slot != 0)
            continue; /* the slots of a name share its context */
        tc = tls_client_new(&b->tls, b->host, msg, sizeof(msg));
        if (tc == NULL) {
            *line = b->tls.line;
            snprintf(err, errlen, "backend '%s': %s", b->name, msg);
            return -1;
        }
        tls_client_free(tc);
    }
    if (c->otel_trace_https) {
        struct tls_client *tc = tls_client_new(&c->otel_tls, c->otel_trace_host, msg, sizeof(msg));

        if (tc == NULL) {
            *line = c->otel_tls.line;
            snprintf(err, errlen, "opentelemetry.traces: %s", msg);
            return -1;
        }
        tls_client_free(tc);
    }
    return 0;
}
