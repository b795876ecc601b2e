/* Unit tests for tls: real handshakes over socketpairs on an event base,
 * with a CA and certificates made here (OpenSSL's API, files in a temporary
 * directory): SNI and ALPN, verification and its failures in words, the
 * reasons of failed client handshakes, client certificates, resumption,
 * reload, and tls_check's messages. No network, no sleeps. */
#include "pitot/io/tls.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "pitot/format/config.h"

static char dir[64];     /* the temporary directory */
static char err[1024];   /* messages */
static EVP_PKEY *ca_key; /* the test CA */
static X509 *ca;

/* dir/name into out[256]. */
static const char *path(char *out, const char *name)
{
    snprintf(out, 256, "%s/%s", dir, name);
    return out;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509_EXTENSION *e;

    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for key, signed by the CA (issuer NULL: self-signed, a CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, long serial, X509 *issuer,
                       EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509_NAME *n;

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
    if (issuer == NULL) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
        add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
        add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
        add_ext(x, issuer, NID_subject_alt_name, san);
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_cert(const char *name, X509 *x)
{
    char p[256];
    FILE *f = fopen(path(p, name), "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k, const char *passphrase)
{
    char p[256];
    FILE *f = fopen(path(p, name), "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, passphrase ? EVP_aes_128_cbc() : NULL,
                                          (unsigned char *)passphrase,
                                          passphrase ? (int)strlen(passphrase) : 0, NULL, NULL),
                     1);
    fclose(f);
}

/* name.crt and name.key: a leaf certificate signed by the CA. */
static void make_leaf(const char *name, const char *cn, const char *san, long serial)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x;
    char f[64];

    assert_non_null(k);
    x = make_cert(k, cn, san, serial, ca, ca_key);
    snprintf(f, sizeof(f), "%s.crt", name);
    write_cert(f, x);
    snprintf(f, sizeof(f), "%s.key", name);
    write_key(f, k, NULL);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    EVP_PKEY *k;

    strcpy(dir, "/tmp/pitot-test-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    ca_key = EVP_EC_gen("P-256");
    ca = make_cert(ca_key, "pitot test CA", NULL, 1, NULL, NULL);
    write_cert("ca.crt", ca);
    make_leaf("a", "a.test", "DNS:a.test,IP:127.0.0.1", 2);
    make_leaf("b", "b.test", "DNS:b.test,DNS:*.b.test", 3);
    make_leaf("client", "pitot client", "DNS:pitot.client", 4);
    /* a key of nothing: does not match a.crt */
    k = EVP_EC_gen("P-256");
    write_key("other.key", k, NULL);
    write_key("secret.key", k, "passphrase");
    EVP_PKEY_free(k);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    X509_free(ca);
    EVP_PKEY_free(ca_key);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A config with the listener's certificates a (default) and b. */
static struct cfg *server_cfg(void)
{
    struct cfg *c = malloc(sizeof(*c));
    char p[256];

    assert_non_null(c);
    cfg_init(c);
    snprintf(c->tls_certs[0].cert, CFG_PATH_MAX, "%s", path(p, "a.crt"));
    snprintf(c->tls_certs[0].key, CFG_PATH_MAX, "%s", path(p, "a.key"));
    snprintf(c->tls_certs[1].cert, CFG_PATH_MAX, "%s", path(p, "b.crt"));
    snprintf(c->tls_certs[1].key, CFG_PATH_MAX, "%s", path(p, "b.key"));
    c->tls_certs[0].line = 3;
    c->tls_certs[1].line = 5;
    c->ntls_certs = 2;
    return c;
}

/* A client's settings: the test CA, verification on. */
static void client_cfg(struct cfg_tls_client *t)
{
    char p[256];

    memset(t, 0, sizeof(*t));
    snprintf(t->ca_file, CFG_PATH_MAX, "%s", path(p, "ca.crt"));
    t->verify = true;
}

/* ---- a handshake over a socketpair ------------------------------------- */

struct side {
    struct bufferevent *bev;
    short what;     /* the event that settled it, 0 while running */
    bool connected; /* BEV_EVENT_CONNECTED */
    char got[64];   /* bytes read after the handshake */
    size_t ngot;
};

struct pair {
    struct event_base *base;
    struct side c, s;
    int fd[2];
};

static void side_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct side *sd = arg;

    sd->what = what;
    if (what & BEV_EVENT_CONNECTED)
        sd->connected = true;
}

static void side_read_cb(struct bufferevent *bev, void *arg)
{
    struct side *sd = arg;

    sd->ngot += bufferevent_read(bev, sd->got + sd->ngot, sizeof(sd->got) - 1 - sd->ngot);
}

static bool settled(const struct pair *p)
{
    return (p->c.bev == NULL || p->c.what) && (p->s.bev == NULL || p->s.what);
}

/* Runs the loop until both sides settled (or 5 s, a failure). */
static void run(struct pair *p)
{
    struct timeval tv = { 5, 0 };

    event_base_loopexit(p->base, &tv);
    while (!settled(p))
        if (event_base_loop(p->base, EVLOOP_ONCE) != 0 || event_base_got_exit(p->base))
            fail_msg("handshake did not settle");
    event_base_loopbreak(p->base);
}

static void start_side(struct side *sd, struct bufferevent *bev)
{
    assert_non_null(bev);
    sd->bev = bev;
    bufferevent_setcb(bev, side_read_cb, NULL, side_event_cb, sd);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* A pair with a server bufferevent from s (NULL: none, the test writes raw
 * bytes to fd[0]) and a client one from tc (NULL: raw_client is used). */
static void pair_start(struct pair *p, struct tls_server *s, struct tls_client *tc, SSL *raw_client)
{
    memset(p, 0, sizeof(*p));
    p->base = event_base_new();
    assert_non_null(p->base);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
    evutil_make_socket_nonblocking(p->fd[0]);
    evutil_make_socket_nonblocking(p->fd[1]);
    if (s != NULL)
        start_side(&p->s, tls_server_bev(s, p->base, p->fd[1]));
    if (tc != NULL) {
        struct bufferevent *bev = tls_client_bev(tc, p->base);
        assert_non_null(bev);
        assert_int_equal(bufferevent_setfd(bev, p->fd[0]), 0);
        start_side(&p->c, bev);
    } else if (raw_client != NULL) {
        start_side(&p->c, bufferevent_openssl_socket_new(p->base, p->fd[0], raw_client,
                                                         BUFFEREVENT_SSL_CONNECTING,
                                                         BEV_OPT_CLOSE_ON_FREE));
    }
}

static void pair_free(struct pair *p)
{
    if (p->c.bev)
        bufferevent_free(p->c.bev);
    else
        close(p->fd[0]);
    if (p->s.bev)
        bufferevent_free(p->s.bev);
    else
        close(p->fd[1]);
    event_base_free(p->base);
}

/* The CN of the certificate the server side presented. */
static void server_cn(struct pair *p, char *out, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(p->s.bev);
    X509 *x = SSL_get_certificate(ssl);

    assert_non_null(x);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap) >
                0);
}

/* A raw client SSL (for what pitot's own client never does): versions, ALPN. */
static SSL *raw_client(int max_version, const char *alpn)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;

    assert_non_null(ctx);
    SSL_CTX_set_security_level(ctx, 0); /* let it offer TLS 1.1 */
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (max_version < TLS1_2_VERSION)
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    if (alpn)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)alpn, (unsigned)strlen(alpn));
    ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* ssl holds its own reference */
    return ssl;
}

/* ---- tests ------------------------------------------------------------- */

/* SNI picks the certificate (a wildcard too), no SNI or an unknown name
 * gets the default; ALPN is http/1.1; TLS 1.3; the certificate verifies
 * against the CA with the name checked. */
static void test_sni_alpn_verify(void **state)
{
    static const struct {
        const char *host, *server_name, *cn;
    } cases[] = {
        { "b.test", "", "b.test" },          /* SNI: the second certificate */
        { "x.b.test", "", "b.test" },        /* a wildcard of the second */
        { "a.test", "", "a.test" },          /* the first by name */
        { "127.0.0.1", "", "a.test" },       /* an IP: no SNI, the default, IP SAN checked */
        { "127.0.0.1", "b.test", "b.test" }, /* server_name: SNI and the name checked */
    };
    struct cfg *c = server_cfg();
    struct tls_server *s = tls_server_new(c, err, sizeof(err));
    struct cfg_tls_client t[5];
    size_t i;

    assert_non_null(s);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tls_client *tc;
        struct pair p;
        const unsigned char *alpn;
        unsigned alpn_len;
        char cn[64];

        client_cfg(&t[i]);
        snprintf(t[i].server_name, sizeof(t[i].server_name), "%s", cases[i].server_name);
        tc = tls_client_new(&t[i], cases[i].host, err, sizeof(err));
        assert_non_null(tc);
        pair_start(&p, s, tc, NULL);
        run(&p);
        if (!p.c.connected || !p.s.connected) {
            char why[256] = "";
            tls_bev_error(p.c.bev, why, sizeof(why));
            fail_msg("case %zu (%s): client 0x%x server 0x%x: %s", i, cases[i].host,
                     (unsigned)p.c.what, (unsigned)p.s.what, why);
        }
        server_cn(&p, cn, sizeof(cn));
        assert_string_equal(cn, cases[i].cn);
        SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(p.c.bev), &alpn, &alpn_len);
        assert_int_equal(alpn_len, 8);
        assert_memory_equal(alpn, "http/1.1", 8);
        assert_int_equal(SSL_version(bufferevent_openssl_get_ssl(p.s.bev)), TLS1_3_VERSION);
        assert_true(tls_bev_is_tls(p.c.bev));
        pair_free(&p);
        tls_client_free(tc);
    }
    tls_server_free(s);
    free(c);
    (void)state;
}

/* A certificate that does not verify: the client's failure in words, the
 * server's reason from the client's alert; with verify: false it connects. */
static void test_verify_failures(void **state)
{
    struct cfg *c = server_cfg();
    struct tls_server *s = tls_server_new(c, err, sizeof(err));
    struct cfg_tls_client t;
    struct tls_client *tc;
    struct pair p;
    char why[256], p2[256];

    assert_non_null(s);
    /* the wrong CA: a.crt is no CA of b's */
    client_cfg(&t);
    snprintf(t.ca_file, sizeof(t.ca_file), "%s", path(p2, "a.crt"));
    tc = tls_client_new(&t, "b.test", err, sizeof(err));
    assert_non_null(tc);
    pair_start(&p, s, tc, NULL);
    run(&p);
    assert_false(p.c.connected);
    assert_true(p.c.what & BEV_EVENT_ERROR);
    assert_true(tls_bev_error(p.c.bev, why, sizeof(why)));
    assert_string_equal(why, "certificate verify failed: unable to get local issuer certificate");
    assert_false(p.s.connected);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, why, sizeof(why)),
                     TLS_FAIL_UNKNOWN_CA);
    assert_string_equal(why, "tlsv1 alert unknown ca");
    pair_free(&p);
    tls_client_free(tc);

    /* the right CA, a name the certificate does not have */
    client_cfg(&t);
    snprintf(t.server_name, sizeof(t.server_name), "c.test");
    tc = tls_client_new(&t, "127.0.0.1", err, sizeof(err));
    assert_non_null(tc);
    assert_string_equal(tls_client_name(tc), "c.test");
    pair_start(&p, s, tc, NULL);
    run(&p);
    assert_false(p.c.connected);
    assert_true(tls_bev_error(p.c.bev, why, sizeof(why)));
    assert_string_equal(why, "certificate verify failed: hostname mismatch");
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, NULL, 0), TLS_FAIL_BAD_CERTIFICATE);
    pair_free(&p);
    tls_client_free(tc);

    /* verify: false, written out: connects whatever the certificate */
    client_cfg(&t);
    snprintf(t.ca_file, sizeof(t.ca_file), "%s", path(p2, "a.crt"));
    snprintf(t.server_name, sizeof(t.server_name), "c.test");
    t.verify = false;
    tc = tls_client_new(&t, "127.0.0.1", err, sizeof(err));
    assert_non_null(tc);
    pair_start(&p, s, tc, NULL);
    run(&p);
    assert_true(p.c.connected);
    assert_true(p.s.connected);
    pair_free(&p);
    tls_client_free(tc);

    tls_server_free(s);
    free(c);
    (void)state;
}

/* The reasons of failed client handshakes, from what clients really do. */
static void test_handshake_reasons(void **state)
{
    struct cfg *c = server_cfg();
    struct tls_server *s = tls_server_new(c, err, sizeof(err));
    struct pair p;
    char why[256];
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    assert_non_null(s);
    /* TLS 1.1 is refused */
    pair_start(&p, s, NULL, raw_client(TLS1_1_VERSION, NULL));
    run(&p);
    assert_false(p.s.connected);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, why, sizeof(why)),
                     TLS_FAIL_PROTOCOL_VERSION);
    assert_string_equal(why, "unsupported protocol");
    pair_free(&p);

    /* ALPN without http/1.1 */
    pair_start(&p, s, NULL, raw_client(TLS1_3_VERSION, "\x02h2"));
    run(&p);
    assert_false(p.s.connected);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, NULL, 0),
                     TLS_FAIL_NO_APPLICATION_PROTOCOL);
    pair_free(&p);

    /* ALPN with http/1.1 among others, and TLS 1.2 */
    pair_start(&p, s, NULL, raw_client(TLS1_2_VERSION, "\x02h2\x08http/1.1"));
    run(&p);
    assert_true(p.s.connected);
    assert_int_equal(SSL_version(bufferevent_openssl_get_ssl(p.s.bev)), TLS1_2_VERSION);
    pair_free(&p);

    /* plain HTTP to the TLS listener */
    pair_start(&p, s, NULL, NULL);
    assert_int_equal(write(p.fd[0], http, sizeof(http) - 1), (ssize_t)(sizeof(http) - 1));
    run(&p);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, NULL, 0), TLS_FAIL_HTTP_REQUEST);
    pair_free(&p);

    /* the client closes before its hello */
    pair_start(&p, s, NULL, NULL);
    close(p.fd[0]);
    p.fd[0] = -1;
    run(&p);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, why, sizeof(why)), TLS_FAIL_CLOSED);
    bufferevent_free(p.s.bev);
    event_base_free(p.base);

    /* garbage */
    pair_start(&p, s, NULL, NULL);
    assert_int_equal(write(p.fd[0], "\x16\x03\x01\x00\x05zzzzz", 10), 10);
    run(&p);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, NULL, 0), TLS_FAIL_OTHER);
    pair_free(&p);
    tls_server_free(s);

    /* min_version 1.3: a TLS 1.2 client is refused */
    c->tls_min_version = CFG_TLS_1_3;
    s = tls_server_new(c, err, sizeof(err));
    assert_non_null(s);
    pair_start(&p, s, NULL, raw_client(TLS1_2_VERSION, NULL));
    run(&p);
    assert_int_equal(tls_handshake_reason(p.s.bev, p.s.what, NULL, 0), TLS_FAIL_PROTOCOL_VERSION);
    pair_free(&p);
    tls_server_free(s);
    free(c);
    (void)state;
}

/* A backend that asks for a client certificate gets it; without one the
 * handshake fails. */
static void test_client_certificate(void **state)
{
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    struct cfg_tls_client t;
    struct tls_client *tc;
    struct pair p;
    char p1[256], p2[256];
    int k;

    assert_non_null(sctx);
    assert_int_equal(SSL_CTX_use_certificate_file(sctx, path(p1, "a.crt"), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(sctx, path(p1, "a.key"), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(sctx, path(p1, "ca.crt"), NULL), 1);
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    for (k = 0; k < 2; k++) {
        SSL *ss = SSL_new(sctx);

        client_cfg(&t);
        if (k == 0) {
            snprintf(t.cert, sizeof(t.cert), "%s", path(p1, "client.crt"));
            snprintf(t.key, sizeof(t.key), "%s", path(p2, "client.key"));
        }
        tc = tls_client_new(&t, "a.test", err, sizeof(err));
        assert_non_null(tc);
        pair_start(&p, NULL, tc, NULL);
        start_side(&p.s,
                   bufferevent_openssl_socket_new(p.base, p.fd[1], ss, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE));
        run(&p);
        if (k == 0) {
            X509 *peer;
            char cn[64];

            assert_true(p.s.connected);
            peer = SSL_get1_peer_certificate(bufferevent_openssl_get_ssl(p.s.bev));
            assert_non_null(peer);
            X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, 64);
            assert_string_equal(cn, "pitot client");
            X509_free(peer);
        } else {
            /* TLS 1.3: the client learns it when it reads next */
            assert_false(p.s.connected);
        }
        pair_free(&p);
        tls_client_free(tc);
    }
    SSL_CTX_free(sctx);
    (void)state;
}

/* Each connection of a client after the first resumes the session of the
 * one before, although the client ends each without close_notify. */
static void test_resumption(void **state)
{
    struct cfg *c = server_cfg();
    struct tls_server *s = tls_server_new(c, err, sizeof(err));
    struct cfg_tls_client t;
    struct tls_client *tc;
    int k;

    assert_non_null(s);
    client_cfg(&t);
    tc = tls_client_new(&t, "a.test", err, sizeof(err));
    assert_non_null(tc);
    for (k = 0; k < 3; k++) {
        struct pair p;

        pair_start(&p, s, tc, NULL);
        run(&p);
        assert_true(p.c.connected && p.s.connected);
        assert_int_equal(SSL_session_reused(bufferevent_openssl_get_ssl(p.c.bev)), k > 0);
        /* TLS 1.3 tickets come after the handshake: a reply carries them */
        p.c.what = 0;
        bufferevent_write(p.s.bev, "x", 1);
        while (p.c.ngot == 0)
            event_base_loop(p.base, EVLOOP_ONCE);
        /* as the listener ends a connection: an OpenSSL server forgets the
         * session of one that ends without close_notify */
        tls_close_notify(p.s.bev);
        pair_free(&p);
    }
    tls_client_free(tc);
    tls_server_free(s);
    free(c);
    (void)state;
}

/* Reload: new files are used for new handshakes; a file that does not load
 * leaves the contexts as they were. */
static void test_reload(void **state)
{
    struct cfg *c = server_cfg();
    struct tls_server *s = tls_server_new(c, err, sizeof(err));
    struct cfg_tls_client t;
    struct tls_client *tc;
    struct pair p;
    char cn[64], p1[256], p2[256];

    assert_non_null(s);
    client_cfg(&t);
    tc = tls_client_new(&t, "127.0.0.1", err, sizeof(err));
    assert_non_null(tc);
    /* a2: another certificate for the same names, in a's place */
    make_leaf("a2", "a2.test", "DNS:a.test,IP:127.0.0.1", 5);
    snprintf(c->tls_certs[0].cert, CFG_PATH_MAX, "%s", path(p1, "a2.crt"));
    snprintf(c->tls_certs[0].key, CFG_PATH_MAX, "%s", path(p2, "a2.key"));
    assert_int_equal(tls_server_reload(s, err, sizeof(err)), 0);
    pair_start(&p, s, tc, NULL);
    run(&p);
    assert_true(p.c.connected);
    server_cn(&p, cn, sizeof(cn));
    assert_string_equal(cn, "a2.test");
    pair_free(&p);
    /* b's key no longer matches: nothing changes */
    snprintf(c->tls_certs[1].key, CFG_PATH_MAX, "%s", path(p2, "other.key"));
    assert_int_equal(tls_server_reload(s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "tls.certificates[1]: key '"));
    assert_non_null(strstr(err, "other.key' does not match the certificate '"));
    pair_start(&p, s, tc, NULL);
    run(&p);
    assert_true(p.c.connected);
    server_cn(&p, cn, sizeof(cn));
    assert_string_equal(cn, "a2.test");
    pair_free(&p);
    tls_client_free(tc);
    tls_server_free(s);
    free(c);
    (void)state;
}

/* tls_check: each file problem in words, with the config line it is about. */
static void test_check(void **state)
{
    struct cfg *c = server_cfg();
    unsigned line = 99;
    char p1[256], want[600];

    assert_int_equal(tls_check(c, err, sizeof(err), &line), 0);
    assert_int_equal(line, 0);

    snprintf(c->tls_certs[1].cert, CFG_PATH_MAX, "%s", path(p1, "missing.crt"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_int_equal(line, 5);
    snprintf(want, sizeof(want),
             "tls.certificates[1]: certificate '%s': cannot read: No such file or directory", p1);
    assert_string_equal(err, want);

    snprintf(c->tls_certs[1].cert, CFG_PATH_MAX, "%s", path(p1, "b.key"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_non_null(strstr(err, "b.key': not a PEM certificate ("));

    snprintf(c->tls_certs[1].cert, CFG_PATH_MAX, "%s", path(p1, "b.crt"));
    snprintf(c->tls_certs[1].key, CFG_PATH_MAX, "%s", path(p1, "secret.key"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_non_null(strstr(err, "secret.key': not a PEM private key without a passphrase ("));

    snprintf(c->tls_certs[1].key, CFG_PATH_MAX, "%s", path(p1, "b.key"));
    c->tls_certs[0].line = 0; /* --tls-cert */
    snprintf(c->tls_certs[0].key, CFG_PATH_MAX, "%s", path(p1, "b.key"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_int_equal(line, 0);
    assert_non_null(strstr(err, "--tls-cert/--tls-key: key '"));
    assert_non_null(strstr(err, "b.key' does not match the certificate '"));
    c->ntls_certs = 0;

    /* an https backend's files */
    assert_int_equal(cfg_backend_add(c, "https://a.test:8443", "gpu", err, sizeof(err)), 0);
    c->backends[0].tls.line = 12;
    assert_int_equal(tls_check(c, err, sizeof(err), &line), 0);
    snprintf(c->backends[0].tls.ca_file, CFG_PATH_MAX, "%s", path(p1, "nope.pem"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_int_equal(line, 12);
    snprintf(want, sizeof(want),
             "backend 'gpu': tls.ca_file '%s': cannot read: No such file or directory", p1);
    assert_string_equal(err, want);
    snprintf(c->backends[0].tls.ca_file, CFG_PATH_MAX, "%s", path(p1, "a.key"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_non_null(strstr(err, "a.key': no PEM certificate in it ("));
    snprintf(c->backends[0].tls.ca_file, CFG_PATH_MAX, "%s", path(p1, "ca.crt"));
    snprintf(c->backends[0].tls.cert, CFG_PATH_MAX, "%s", path(p1, "client.crt"));
    snprintf(c->backends[0].tls.key, CFG_PATH_MAX, "%s", path(p1, "a.key"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), -1);
    assert_non_null(strstr(err, "backend 'gpu': tls (client certificate): key '"));
    snprintf(c->backends[0].tls.key, CFG_PATH_MAX, "%s", path(p1, "client.key"));
    assert_int_equal(tls_check(c, err, sizeof(err), &line), 0);
    free(c);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_alpn_verify),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_handshake_reasons),
        cmocka_unit_test(test_client_certificate),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_check),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
