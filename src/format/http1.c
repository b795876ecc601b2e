/* http1: HTTP/1.x heads and bodies via llhttp (strict mode), with the front
 * door's checks against request smuggling layered on top. The head may come
 * in any split: the parser keeps offsets from the message's first byte, never
 * pointers into input it does not own, and refuses bytes that can no longer
 * become a valid message as soon as they arrive. */
#include "pitot/format/http1.h"

#include <string.h>

#if !LLHTTP_STRICT_MODE
#error "llhttp must be built and included with LLHTTP_STRICT_MODE=1"
#endif

enum { H1_PHASE_HEAD, H1_PHASE_BODY, H1_PHASE_DONE };

#define H1_DEFAULT_HEAD_BYTES 32768

static struct h1_parser *h1_of(llhttp_t *l)
{
    return (struct h1_parser *)l->data;
}

static enum pitot_err h1_bad(const struct h1_parser *p)
{
    return p->kind == H1_REQUEST ? PITOT_EBAD_REQUEST : PITOT_EUPSTREAM_PROTOCOL;
}

static enum pitot_err h1_too_large(const struct h1_parser *p)
{
    return p->kind == H1_REQUEST ? PITOT_EHEADER_TOO_LARGE : PITOT_EUPSTREAM_TOO_LARGE;
}

static int h1_fail(struct h1_parser *p, enum pitot_err e, const char *reason)
{
    p->err = e;
    p->reason = reason;
    llhttp_set_error_reason(&p->llh, reason);
    return HPE_USER;
}

/* The offset of `at` from the message's first byte (head phase only). */
static uint32_t h1_off(const struct h1_parser *p, const char *at)
{
    return (uint32_t)(at - p->base);
}

/* Grows the range [*off, *off + *len) to end at at + len; a new range when
 * it is empty. Pieces of one token are contiguous in the message. */
static void h1_extend(const struct h1_parser *p, uint32_t *off, uint32_t *len, const char *at,
                      size_t n)
{
    uint32_t o = h1_off(p, at);

    if (*len == 0)
        *off = o;
    *len = o + (uint32_t)n - *off;
}

static struct span h1_at(const struct h1_parser *p, const char *base, uint32_t off, uint32_t len)
{
    return span_make(base + off, len);
}

/* Chunk extensions and trailer fields: metadata of the body, held to the
 * head's size limit together, so that no amount of it is free. */
static int h1_meta(struct h1_parser *p, size_t n)
{
    p->meta_bytes += n;
    if (p->meta_bytes > p->lim.max_head_bytes)
        return h1_fail(p, h1_too_large(p), "chunk extensions or trailer fields too large");
    return 0;
}

static bool h1_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int h1_on_message_begin(llhttp_t *l)
{
    (void)l;
    return 0;
}

static int h1_on_method(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);

    h1_extend(p, &p->method_off, &p->method_len, at, len);
    return 0;
}

static int h1_on_method_complete(llhttp_t *l)
{
    /* A tunnel is not a request pitot can relay to an inference server. */
    if (llhttp_get_method(l) == HTTP_CONNECT)
        return h1_fail(h1_of(l), PITOT_EMETHOD_NOT_ALLOWED, "CONNECT is not allowed");
    return 0;
}

static int h1_on_url(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);

    h1_extend(p, &p->url_off, &p->url_len, at, len);
    if (p->url_len > p->lim.max_uri_bytes)
        return h1_fail(p, PITOT_EURI_TOO_LONG, "request target too long");
    return 0;
}

static int h1_on_header_field(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);
    struct h1_field_at *f;

    if (p->phase != H1_PHASE_HEAD)
        return h1_meta(p, len); /* a trailer field: counted, never kept */
    f = &p->field;
    if (p->nfields == 0 || p->field_done) {
        if (p->nfields >= p->lim.max_headers)
            return h1_fail(p, h1_too_large(p), "too many header fields");
        p->nfields++;
        memset(f, 0, sizeof(*f));
        p->field_done = false;
    }
    h1_extend(p, &f->name_off, &f->name_len, at, len);
    if (p->nfields == 1)
        p->first_field_off = f->name_off;
    return 0;
}

static int h1_on_header_value(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);
    struct h1_field_at *f;
    size_t i;

    /* Control bytes in a value (NUL, CR, LF smuggled in): never forward. The
     * piece is checked as it comes, so a trailer needs no copy. */
    for (i = 0; i < len; i++)
        if (h1_ctl((unsigned char)at[i]))
            return h1_fail(p, h1_bad(p), "control character in header value");
    if (p->phase != H1_PHASE_HEAD)
        return h1_meta(p, len);
    if (p->nfields == 0 || p->field_done)
        return h1_fail(p, h1_bad(p), "header field without a name");
    f = &p->field;
    h1_extend(p, &f->value_off, &f->value_len, at, len);
    return 0;
}

static struct span h1_trim(struct span s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

static int h1_on_header_value_complete(llhttp_t *l)
{
    struct h1_parser *p = h1_of(l);
    struct h1_field_at *f;
    struct span name, value;

    if (p->phase != H1_PHASE_HEAD)
        return 0; /* trailers are dropped: pitot frames what it sends */
    if (p->nfields == 0 || p->field_done)
        return h1_fail(p, h1_bad(p), "header field without a name");
    f = &p->field;
    p->field_done = true;
    /* During the head phase the whole head so far is contiguous at base. */
    name = h1_at(p, p->base, f->name_off, f->name_len);
    if (name.len == 0)
        return h1_fail(p, h1_bad(p), "empty header field name");
    if (f->value_len == 0)
        f->value_off = f->name_off + f->name_len;
    value = h1_trim(h1_at(p, p->base, f->value_off, f->value_len));
    f->value_off = h1_off(p, value.p);
    f->value_len = (uint32_t)value.len;
    if (span_ieq(name, "content-length")) {
        p->n_cl++;
    } else if (span_ieq(name, "host")) {
        p->n_host++;
    } else if (span_ieq(name, "transfer-encoding")) {
        p->n_te++;
        /* Only chunked: pitot re-frames every body, and another coding
         * (gzip, chunked) would be lost on the way. */
        if (!span_ieq(value, "chunked"))
            return h1_fail(
                p, p->kind == H1_REQUEST ? PITOT_ENOT_IMPLEMENTED : PITOT_EUPSTREAM_PROTOCOL,
                "unsupported transfer coding");
    } else if (span_ieq(name, "expect") && p->kind == H1_REQUEST) {
        if (!span_ieq(value, "100-continue"))
            return h1_fail(p, PITOT_EEXPECTATION, "unsupported expectation");
        p->msg.expect_continue = true;
    }
    return 0;
}

static bool h1_scheme(struct span url, const char *scheme, size_t *after)
{
    size_t n = strlen(scheme);

    if (url.len < n || !span_ieq(span_make(url.p, n), scheme))
        return false;
    *after = n;
    return true;
}

/* Reduces an absolute-form target to origin-form, its authority becoming the
 * host (RFC 9112 3.2.2); refuses the forms pitot does not relay. */
static int h1_target(struct h1_parser *p, struct h1_msg *m)
{
    struct span url = m->url;
    size_t i, start;

    if (url.len && url.p[0] == '/')
        return 0;
    if (span_eq(url, "*"))
        return h1_fail(p, PITOT_EBAD_REQUEST, "asterisk-form target");
    if (!h1_scheme(url, "http://", &start) && !h1_scheme(url, "https://", &start))
        return h1_fail(p, PITOT_EBAD_REQUEST, "request target is not origin- or absolute-form");
    for (i = start; i < url.len && url.p[i] != '/' && url.p[i] != '?' && url.p[i] != '#'; i++)
        if (url.p[i] == '@')
            return h1_fail(p, PITOT_EBAD_REQUEST, "user information in request target");
    if (i == start)
        return h1_fail(p, PITOT_EBAD_REQUEST, "absolute-form target without a host");
    if (i == url.len || url.p[i] != '/')
        return h1_fail(p, PITOT_EBAD_REQUEST, "absolute-form target without a path");
    m->host = span_make(url.p + start, i - start);
    m->url = span_make(url.p + i, url.len - i);
    return 0;
}

/* The header table of the last head completed on this thread (see h1_msg). */
static _Thread_local struct h1_header h1_fields[H1_MAX_HEADERS];

/* The head's fields, read again from its bytes now that they are whole and
 * llhttp (strict) and the pre-scan have checked them: from the first field
 * on, one field a line, `name:value` with the value's blanks trimmed. The
 * last field read so must be the one the callbacks saw last. */
static int h1_fields_table(struct h1_parser *p, struct h1_msg *m)
{
    const char *c = p->base + p->first_field_off;
    unsigned i;

    for (i = 0; i < p->nfields; i++) {
        struct h1_header *h = &h1_fields[i];
        const char *colon = memchr(c, ':', (size_t)(p->base_end - c)), *eol;

        /* every field line ends in CRLF, so both are found within the head */
        eol = colon ? memchr(colon, '\n', (size_t)(p->base_end - colon)) : NULL;
        if (eol == NULL || eol == colon || eol[-1] != '\r')
            return h1_fail(p, h1_bad(p), "malformed header field");
        h->name = span_make(c, (size_t)(colon - c));
        h->value = h1_trim(span_make(colon + 1, (size_t)(eol - 1 - (colon + 1))));
        if (p->kind == H1_REQUEST && span_ieq(h->name, "host"))
            m->host = h->value;
        c = eol + 1;
    }
    if (p->nfields) {
        const struct h1_header *last = &h1_fields[p->nfields - 1];
        if (h1_off(p, last->name.p) != p->field.name_off || last->name.len != p->field.name_len ||
            last->value.len != p->field.value_len)
            return h1_fail(p, h1_bad(p), "malformed header field");
    }
    m->headers = h1_fields;
    m->nheaders = p->nfields;
    return 0;
}

/* The head is whole: the message's spans from the offsets, and the checks
 * that need all of its fields. */
static int h1_on_headers_complete(llhttp_t *l)
{
    struct h1_parser *p = h1_of(l);
    struct h1_msg *m = &p->msg;

    m->http_major = llhttp_get_http_major(l);
    m->http_minor = llhttp_get_http_minor(l);
    m->method = h1_at(p, p->base, p->method_off, p->method_len);
    m->url = h1_at(p, p->base, p->url_off, p->url_len);
    if (h1_fields_table(p, m) != 0)
        return HPE_USER;
    if (p->n_cl > 1)
        return h1_fail(p, h1_bad(p), "repeated Content-Length");
    /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty. */
    if (p->n_te && m->http_major == 1 && m->http_minor == 0)
        return h1_fail(p, h1_bad(p), "Transfer-Encoding in an HTTP/1.0 message");
    if (p->kind == H1_REQUEST) {
        if (m->http_major != 1)
            return h1_fail(p, PITOT_EBAD_VERSION, "unsupported HTTP version");
        if (m->http_minor >= 1 && p->n_host != 1)
            return h1_fail(p, PITOT_EBAD_REQUEST, "HTTP/1.1 request needs exactly one Host");
        if (p->n_host > 1)
            return h1_fail(p, PITOT_EBAD_REQUEST, "repeated Host");
        if (h1_target(p, m) != 0)
            return HPE_USER;
    } else {
        m->status = llhttp_get_status_code(l);
        if (m->status < 100 || m->status > 999)
            return h1_fail(p, PITOT_EUPSTREAM_PROTOCOL, "status code not of three digits");
    }
    m->chunked = (l->flags & F_CHUNKED) != 0;
    if (l->flags & F_CONTENT_LENGTH)
        m->content_length = (int64_t)l->content_length;
    m->keep_alive = llhttp_should_keep_alive(l) != 0;
    p->phase = H1_PHASE_BODY;
    if (p->no_body)
        return 1; /* llhttp: no body follows; message completes at once */
    /* Pause only when a body may follow; otherwise llhttp completes the
     * message in this same call, and h1_execute() reports HEAD then DONE. */
    if (m->chunked || m->content_length > 0)
        return HPE_PAUSED;
    if (p->kind == H1_RESPONSE && m->content_length < 0 && h1_status_has_body(m->status))
        return HPE_PAUSED;
    return 0;
}

static int h1_on_chunk_extension(llhttp_t *l, const char *at, size_t len)
{
    (void)at;
    return h1_meta(h1_of(l), len);
}

static int h1_on_body(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);

    if (p->on_body && p->on_body(p->ud, span_make(at, len)) != 0) {
        if (p->reason == NULL)
            p->reason = "body consumer failed";
        llhttp_set_error_reason(&p->llh, p->reason);
        return HPE_USER;
    }
    return 0;
}

static int h1_on_message_complete(llhttp_t *l)
{
    h1_of(l)->phase = H1_PHASE_DONE;
    return HPE_PAUSED;
}

/* The same callbacks for every parser: one table, not one a connection. */
static const llhttp_settings_t h1_settings = {
    .on_message_begin = h1_on_message_begin,
    .on_method = h1_on_method,
    .on_method_complete = h1_on_method_complete,
    .on_url = h1_on_url,
    .on_header_field = h1_on_header_field,
    .on_header_value = h1_on_header_value,
    .on_header_value_complete = h1_on_header_value_complete,
    .on_headers_complete = h1_on_headers_complete,
    .on_chunk_extension_name = h1_on_chunk_extension,
    .on_chunk_extension_value = h1_on_chunk_extension,
    .on_body = h1_on_body,
    .on_message_complete = h1_on_message_complete,
};

void h1_init(struct h1_parser *p, enum h1_kind kind, const struct h1_limits *lim,
             h1_body_cb on_body, void *ud)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->lim.max_headers = H1_MAX_HEADERS;
    p->lim.max_uri_bytes = 8192;
    p->lim.max_head_bytes = H1_DEFAULT_HEAD_BYTES;
    if (lim) {
        p->lim = *lim;
        if (p->lim.max_headers == 0 || p->lim.max_headers > H1_MAX_HEADERS)
            p->lim.max_headers = H1_MAX_HEADERS;
        if (p->lim.max_head_bytes == 0 || p->lim.max_head_bytes > UINT32_MAX)
            p->lim.max_head_bytes = H1_DEFAULT_HEAD_BYTES;
    }
    p->on_body = on_body;
    p->ud = ud;
    llhttp_init(&p->llh, kind == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &h1_settings);
    p->llh.data = p;
    h1_reset(p);
}

void h1_reset(struct h1_parser *p)
{
    llhttp_reset(&p->llh);
    p->llh.data = p;
    p->phase = H1_PHASE_HEAD;
    p->no_body = false;
    p->done_pending = false;
    p->field_done = false;
    p->base = p->base_end = NULL;
    p->fed = 0;
    p->meta_bytes = 0;
    p->method_off = p->method_len = p->url_off = p->url_len = 0;
    p->nfields = 0;
    p->n_cl = p->n_host = p->n_te = 0;
    p->scan_line = 0;
    p->scan_len = 0;
    p->scan_sp = 0;
    p->scan_prev_sp = false;
    p->scan_cr = false;
    p->scan_done = false;
    p->err = PITOT_EOK;
    p->reason = NULL;
    memset(&p->msg, 0, sizeof(p->msg));
    p->msg.content_length = -1;
}

void h1_expect_no_body(struct h1_parser *p)
{
    p->no_body = true;
}

static enum h1_result h1_error(struct h1_parser *p, llhttp_errno_t e)
{
    /* Our callbacks set err before failing; llhttp reports those as HPE_USER
     * or HPE_CB_*, so trust err when it is set. */
    if (p->err == PITOT_EOK) {
        if (p->kind == H1_RESPONSE)
            p->err = PITOT_EUPSTREAM_PROTOCOL;
        else if (e == HPE_INVALID_VERSION)
            p->err = PITOT_EBAD_VERSION;
        else if (e == HPE_INVALID_TRANSFER_ENCODING)
            p->err = PITOT_ENOT_IMPLEMENTED;
        else
            p->err = PITOT_EBAD_REQUEST;
        if (p->reason == NULL)
            p->reason = llhttp_get_error_reason(&p->llh);
        if (p->reason == NULL)
            p->reason = llhttp_errno_name(e);
    }
    p->phase = H1_PHASE_DONE;
    return H1_ERROR;
}

static enum h1_result h1_fail_now(struct h1_parser *p, enum pitot_err e, const char *reason)
{
    p->err = e;
    p->reason = reason;
    p->phase = H1_PHASE_DONE;
    return H1_ERROR;
}

/* Line rules llhttp alone does not enforce on the head, checked on the new
 * bytes before llhttp sees them: no bare CR, no obs-fold (a field line that
 * starts with a blank), no field line that starts with ':', and a request
 * line of exactly three parts with single spaces (so that an HTTP/0.9 line,
 * without a version, is refused as it ends, not left to time out). Stops at
 * the blank line that ends the head; empty lines before the first line are
 * allowed (RFC 9112 2.2). Returns 0, or -1 with the reason. */
static int h1_prescan(struct h1_parser *p, const char *s, size_t n, const char **why)
{
    size_t i;

    for (i = 0; i < n && !p->scan_done; i++) {
        char c = s[i];

        if (p->scan_cr && c != '\n') {
            *why = "bare CR in head";
            return -1;
        }
        if (c == '\r') {
            p->scan_cr = true;
            continue;
        }
        p->scan_cr = false;
        if (p->scan_line == 0 && p->kind == H1_REQUEST) {
            if (c == ' ' && (p->scan_len == 0 || p->scan_prev_sp || p->scan_sp == 2)) {
                *why = "extra space in request line";
                return -1;
            }
            p->scan_sp += c == ' ';
            p->scan_prev_sp = c == ' ';
            if (c == '\n' && p->scan_len > 0 && p->scan_sp != 2) {
                *why = "request line without an HTTP version";
                return -1;
            }
        }
        if (c == '\n') {
            if (p->scan_len == 0 && p->scan_line > 0)
                p->scan_done = true; /* the blank line: the body may follow */
            else if (p->scan_len > 0)
                p->scan_line++;
            p->scan_len = 0;
            continue;
        }
        if (p->scan_len == 0 && p->scan_line > 0) {
            if (c == ' ' || c == '\t') {
                *why = "obs-folded header line";
                return -1;
            }
            if (c == ':') {
                *why = "empty header field name";
                return -1;
            }
        }
        p->scan_len++;
    }
    return 0;
}

static enum h1_result h1_execute_head(struct h1_parser *p, struct span in, size_t *consumed)
{
    size_t end = in.len < p->lim.max_head_bytes ? in.len : p->lim.max_head_bytes;
    const char *why = NULL;
    llhttp_errno_t e;

    if (in.len < p->fed)
        return h1_fail_now(p, h1_bad(p), "head bytes fed again were fewer");
    if (end > p->fed) {
        if (h1_prescan(p, in.p + p->fed, end - p->fed, &why) != 0)
            return h1_fail_now(p, h1_bad(p), why);
        p->base = in.p;
        p->base_end = in.p + end;
        e = llhttp_execute(&p->llh, in.p + p->fed, end - p->fed);
        p->base = p->base_end = NULL;
        if (e == HPE_PAUSED) {
            *consumed = (size_t)(llhttp_get_error_pos(&p->llh) - in.p);
            llhttp_resume(&p->llh);
            /* Paused at the end of the head, or (no body) at the message's end. */
            if (p->phase == H1_PHASE_DONE)
                p->done_pending = true;
            return H1_HEAD;
        }
        if (e != HPE_OK)
            return h1_error(p, e);
        /* The head always ends in a pause (or a complete message); llhttp
         * going on into a body means the two disagree: never guess. */
        if (p->phase != H1_PHASE_HEAD)
            return h1_fail_now(p, h1_bad(p), "head ended without a pause");
        p->fed = end;
    }
    if (p->fed >= p->lim.max_head_bytes)
        return h1_fail_now(p, h1_too_large(p), "head too large");
    return H1_AGAIN;
}

enum h1_result h1_execute(struct h1_parser *p, struct span in, size_t *consumed)
{
    llhttp_errno_t e;

    *consumed = 0;
    if (p->done_pending) {
        p->done_pending = false;
        return H1_DONE;
    }
    if (p->phase == H1_PHASE_DONE)
        return p->err == PITOT_EOK ? H1_DONE : H1_ERROR;
    if (p->phase == H1_PHASE_HEAD)
        return h1_execute_head(p, in, consumed);
    if (in.len == 0)
        return H1_AGAIN;
    e = llhttp_execute(&p->llh, in.p, in.len);
    if (e == HPE_OK) {
        *consumed = in.len;
        return H1_AGAIN;
    }
    if (e != HPE_PAUSED)
        return h1_error(p, e);
    *consumed = (size_t)(llhttp_get_error_pos(&p->llh) - in.p);
    llhttp_resume(&p->llh);
    return p->phase == H1_PHASE_DONE ? H1_DONE : H1_AGAIN;
}

enum h1_result h1_finish(struct h1_parser *p)
{
    llhttp_errno_t e;

    if (p->phase == H1_PHASE_DONE)
        return p->err == PITOT_EOK ? H1_DONE : H1_ERROR;
    if (p->phase == H1_PHASE_HEAD)
        return h1_error(p, HPE_INVALID_EOF_STATE);
    e = llhttp_finish(&p->llh);
    if (e == HPE_OK || e == HPE_PAUSED)
        return p->phase == H1_PHASE_DONE ? H1_DONE : h1_error(p, HPE_INVALID_EOF_STATE);
    return h1_error(p, e);
}

const struct h1_header *h1_header_find(const struct h1_msg *m, const char *name)
{
    unsigned i;

    for (i = 0; i < m->nheaders; i++)
        if (span_ieq(m->headers[i].name, name))
            return &m->headers[i];
    return NULL;
}

/* True if the comma-separated list `list` names `tok` (case-insensitive). */
static bool h1_list_has(struct span list, struct span tok)
{
    size_t i = 0;

    while (i < list.len) {
        size_t start, end;
        while (i < list.len && (list.p[i] == ' ' || list.p[i] == '\t' || list.p[i] == ','))
            i++;
        start = i;
        while (i < list.len && list.p[i] != ',')
            i++;
        end = i;
        while (end > start && (list.p[end - 1] == ' ' || list.p[end - 1] == '\t'))
            end--;
        if (end - start == tok.len && tok.len) {
            size_t k;
            for (k = 0; k < tok.len; k++) {
                unsigned char a = (unsigned char)list.p[start + k], b = (unsigned char)tok.p[k];
                if ((a | 0x20) != (b | 0x20))
                    break;
            }
            if (k == tok.len)
                return true;
        }
    }
    return false;
}

bool h1_is_hop_by_hop(const struct h1_msg *m, struct span name)
{
    static const char *const hop[] = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    };
    unsigned i;

    for (i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (span_ieq(name, hop[i]))
            return true;
    /* Framing and routing are never the sender's to revoke by naming them. */
    if (span_ieq(name, "content-length") || span_ieq(name, "host"))
        return false;
    for (i = 0; i < m->nheaders; i++)
        if (span_ieq(m->headers[i].name, "connection") && h1_list_has(m->headers[i].value, name))
            return true;
    return false;
}

bool h1_status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}
