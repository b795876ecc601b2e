/* http1: HTTP/1.x message parsing on llhttp, for requests (the front door, the
 * simulator) and responses (upstream, the load generator). Resumable and
 * separate from I/O: the caller feeds spans; nothing is allocated. */
#ifndef PITOT_FORMAT_HTTP1_H
#define PITOT_FORMAT_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "pitot/util/err.h"
#include "pitot/util/span.h"

#define H1_MAX_HEADERS 128

enum h1_kind { H1_REQUEST, H1_RESPONSE };

enum h1_result {
    H1_AGAIN = 0, /* all input consumed; feed more */
    H1_HEAD,      /* the head is complete: msg fields valid */
    H1_DONE,      /* the message (head and body) is complete */
    H1_ERROR,     /* malformed: see h1_parser.err and .reason */
};

struct h1_header {
    struct span name;  /* borrowed from the head bytes */
    struct span value; /* borrowed, without surrounding blanks */
};

/* Body bytes as they are decoded (chunk framing removed). Return 0 to go on,
 * -1 to stop parsing with an error (err stays as the callback set it). */
typedef int (*h1_body_cb)(void *ud, struct span body);

/* The parsed head. Every span points into the bytes passed to the h1_execute()
 * call that returned H1_HEAD: the caller keeps them intact while it uses them.
 * The header table is the thread's own scratch, shared by every parser on the
 * thread: it stays valid until the next head completes on that thread, so a
 * head is used where it completed (no parser holds 128 fields a connection).
 * Numbers and flags stay valid until the next message. */
struct h1_msg {
    struct span method; /* requests */
    struct span url;    /* requests: origin-form target (an absolute-form one is
                           reduced to its path and query; its authority is host) */
    int status;         /* responses */
    unsigned http_major, http_minor;
    const struct h1_header *headers; /* nheaders of them; see above */
    unsigned nheaders;
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* llhttp's verdict from version + Connection */
    bool expect_continue;   /* Expect: 100-continue */
    struct span host;       /* requests: the Host header's value, or the authority of an
                               absolute-form target; len 0 if absent */
};

struct h1_limits {
    unsigned max_headers;  /* <= H1_MAX_HEADERS */
    size_t max_uri_bytes;  /* request target */
    size_t max_head_bytes; /* the head; also the chunk extensions and trailer
                              fields of one message, together */
};

/* Where one header field lies in the message: offsets from its first byte,
 * so that no state points into input across h1_execute() calls. */
struct h1_field_at {
    uint32_t name_off, name_len, value_off, value_len;
};

struct h1_parser {
    llhttp_t llh; /* private */
    enum h1_kind kind;
    struct h1_limits lim;
    h1_body_cb on_body;
    void *ud;
    int phase;            /* private: 0 head, 1 body, 2 done */
    bool no_body;         /* private: see h1_expect_no_body() */
    bool done_pending;    /* private: H1_DONE owed after H1_HEAD */
    bool field_done;      /* private: the last field's value is complete */
    const char *base;     /* private: the message's first byte, only during an
                               h1_execute() call in the head phase; else NULL */
    const char *base_end; /* private: the end of the bytes at base, likewise */
    size_t fed;           /* private: head bytes already given to llhttp */
    size_t meta_bytes;    /* private: chunk-extension and trailer bytes so far */
    uint32_t method_off, method_len, url_off, url_len; /* private */
    struct h1_field_at field;                          /* private: the field being read */
    uint32_t first_field_off;                          /* private: where the first field begins */
    unsigned nfields;                                  /* private: fields so far */
    unsigned n_cl, n_host, n_te;                       /* private: fields seen */
    unsigned scan_line; /* private: head lines ended so far (the pre-scan) */
    size_t scan_len;    /* private: bytes of the current head line */
    unsigned scan_sp;   /* private: spaces in the request line */
    bool scan_cr;       /* private: the last head byte was CR */
    bool scan_prev_sp;  /* private: the last request-line byte was a space */
    bool scan_done;     /* private: the pre-scan reached the blank line */
    struct h1_msg msg;
    enum pitot_err err; /* with H1_ERROR: the kind (status to answer) */
    const char *reason; /* with H1_ERROR: static text for logs */
};

/* Prepares p for a first message. lim may be NULL (128 headers, 8 KiB URI,
 * 32 KiB head). */
void h1_init(struct h1_parser *p, enum h1_kind kind, const struct h1_limits *lim,
             h1_body_cb on_body, void *ud);

/* Prepares p for the next message on the same connection. */
void h1_reset(struct h1_parser *p);

/* For responses: the request was HEAD, or the caller knows the response has
 * no body; call before the head is parsed. */
void h1_expect_no_body(struct h1_parser *p);

/* Parses input.
 * The head: `in` holds every byte of the message received so far, from its
 * first byte, in one piece (the parser looks only at the bytes it has not
 * seen yet, and keeps offsets, never pointers, across calls). Returns
 * H1_AGAIN while the head is incomplete (*consumed 0: pass the same bytes
 * and more next time), H1_HEAD once it is complete (*consumed: the head's
 * length; msg is valid, its spans into `in`), H1_ERROR as soon as the bytes
 * can no longer start a valid message (a bare CR, an obs-folded line, a
 * field name that is empty or has a blank, a head longer than
 * max_head_bytes, ...), not only once the head is whole.
 * The body: then any split; returns H1_DONE when the message ends (*consumed
 * bytes used; pipelined bytes after it are left), or H1_AGAIN having used
 * them all.
 * On H1_ERROR, p->err and p->reason say why; the parser is dead until reset.
 * Requests also fail on: missing or repeated Host in HTTP/1.1, repeated
 * Content-Length, Transfer-Encoding other than exactly "chunked" (501) or in
 * HTTP/1.0, control bytes in header values, more headers or a longer URI
 * than the limits, CONNECT (405), a "*" target or an absolute-form one that
 * is not http(s)://authority[/path]. Responses fail on the framing faults. */
enum h1_result h1_execute(struct h1_parser *p, struct span in, size_t *consumed);

/* The connection closed: ends a response delimited by EOF. Returns H1_DONE when
 * the message may end here, H1_ERROR when it was cut short. */
enum h1_result h1_finish(struct h1_parser *p);

/* Finds a header by name (case-insensitive); NULL if absent. */
const struct h1_header *h1_header_find(const struct h1_msg *m, const char *name);

/* True for hop-by-hop headers a proxy must not forward: Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization, and any name listed in the message's
 * Connection header except the ones that frame or route the message
 * (Content-Length, Host): those are never hop-by-hop. */
bool h1_is_hop_by_hop(const struct h1_msg *m, struct span name);

/* The response to a body-bearing request is allowed no body (HEAD, 1xx, 204, 304). */
bool h1_status_has_body(int status);

#endif
