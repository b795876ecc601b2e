/* h1: HTTP/1.x heads and bodies via llhttp, with the front door's checks
 * against request smuggling layered on top of llhttp's strict mode. */
#include "pitot/h1.h"

#include <string.h>

enum { H1_PHASE_HEAD, H1_PHASE_BODY, H1_PHASE_DONE };

static struct h1_parser *h1_of(llhttp_t *l)
{
    return (struct h1_parser *)l->data;
}

static int h1_fail(struct h1_parser *p, enum pitot_err e, const char *reason)
{
    p->err = e;
    p->reason = reason;
    llhttp_set_error_reason(&p->llh, reason);
    return HPE_USER;
}

/* llhttp may split a field across callbacks only across execute() calls; we
 * feed whole heads, but extend contiguous pieces anyway to stay correct. */
static void h1_extend(struct span *s, const char *at, size_t len)
{
    if (s->p == NULL) {
        s->p = at;
        s->len = len;
    } else {
        s->len = (size_t)(at + len - s->p);
    }
}

static int h1_on_message_begin(llhttp_t *l)
{
    struct h1_parser *p = h1_of(l);

    memset(&p->msg, 0, sizeof(p->msg));
    p->msg.content_length = -1;
    p->n_cl = 0;
    p->n_host = 0;
    p->cur_value = false;
    return 0;
}

static int h1_on_method(llhttp_t *l, const char *at, size_t len)
{
    h1_extend(&h1_of(l)->msg.method, at, len);
    return 0;
}

static int h1_on_url(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);

    h1_extend(&p->msg.url, at, len);
    if (p->msg.url.len > p->lim.max_uri_bytes)
        return h1_fail(p, PITOT_EURI_TOO_LONG, "request target too long");
    return 0;
}

static int h1_on_header_field(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);
    struct h1_header *h;

    if (p->cur_value || p->msg.nheaders == 0 || p->msg.headers[p->msg.nheaders - 1].value.p) {
        /* a new field starts */
        if (p->msg.nheaders >= p->lim.max_headers)
            return h1_fail(
                p, p->kind == H1_REQUEST ? PITOT_EHEADER_TOO_LARGE : PITOT_EUPSTREAM_TOO_LARGE,
                "too many header fields");
        h = &p->msg.headers[p->msg.nheaders++];
        h->name = span_make(NULL, 0);
        h->value = span_make(NULL, 0);
        p->cur_value = false;
    }
    h = &p->msg.headers[p->msg.nheaders - 1];
    h1_extend(&h->name, at, len);
    return 0;
}

static int h1_on_header_value(llhttp_t *l, const char *at, size_t len)
{
    struct h1_parser *p = h1_of(l);
    struct h1_header *h = &p->msg.headers[p->msg.nheaders - 1];

    p->cur_value = true;
    h1_extend(&h->value, at, len);
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
    struct h1_header *h = &p->msg.headers[p->msg.nheaders - 1];
    size_t i;

    if (h->value.p == NULL)
        h->value = span_make(h->name.p + h->name.len, 0);
    h->value = h1_trim(h->value);
    /* Control bytes in a value (NUL, CR, LF smuggled in): never forward. */
    for (i = 0; i < h->value.len; i++) {
        unsigned char c = (unsigned char)h->value.p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return h1_fail(p, p->kind == H1_REQUEST ? PITOT_EBAD_REQUEST : PITOT_EUPSTREAM_PROTOCOL,
                           "control character in header value");
    }
    if (span_ieq(h->name, "content-length")) {
        p->n_cl++;
    } else if (span_ieq(h->name, "host")) {
        p->n_host++;
        p->msg.host = h->value;
    } else if (span_ieq(h->name, "transfer-encoding")) {
        if (p->kind == H1_REQUEST && !span_ieq(h->value, "chunked"))
            return h1_fail(p, PITOT_ENOT_IMPLEMENTED, "unsupported transfer coding");
    } else if (span_ieq(h->name, "expect")) {
        if (!span_ieq(h->value, "100-continue"))
            return h1_fail(p, PITOT_EEXPECTATION, "unsupported expectation");
        p->msg.expect_continue = true;
    }
    return 0;
}

static int h1_on_headers_complete(llhttp_t *l)
{
    struct h1_parser *p = h1_of(l);
    struct h1_msg *m = &p->msg;

    m->http_major = llhttp_get_http_major(l);
    m->http_minor = llhttp_get_http_minor(l);
    if (p->n_cl > 1)
        return h1_fail(p, p->kind == H1_REQUEST ? PITOT_EBAD_REQUEST : PITOT_EUPSTREAM_PROTOCOL,
                       "repeated Content-Length");
    if (p->kind == H1_REQUEST) {
        if (m->http_major != 1)
            return h1_fail(p, PITOT_EBAD_VERSION, "unsupported HTTP version");
        if (m->http_minor >= 1 && p->n_host != 1)
            return h1_fail(p, PITOT_EBAD_REQUEST, "HTTP/1.1 request needs exactly one Host");
        if (p->n_host > 1)
            return h1_fail(p, PITOT_EBAD_REQUEST, "repeated Host");
    } else {
        m->status = llhttp_get_status_code(l);
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

void h1_init(struct h1_parser *p, enum h1_kind kind, const struct h1_limits *lim,
             h1_body_cb on_body, void *ud)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->lim.max_headers = H1_MAX_HEADERS;
    p->lim.max_uri_bytes = 8192;
    if (lim) {
        p->lim = *lim;
        if (p->lim.max_headers == 0 || p->lim.max_headers > H1_MAX_HEADERS)
            p->lim.max_headers = H1_MAX_HEADERS;
    }
    p->on_body = on_body;
    p->ud = ud;
    llhttp_settings_init(&p->settings);
    p->settings.on_message_begin = h1_on_message_begin;
    p->settings.on_method = h1_on_method;
    p->settings.on_url = h1_on_url;
    p->settings.on_header_field = h1_on_header_field;
    p->settings.on_header_value = h1_on_header_value;
    p->settings.on_header_value_complete = h1_on_header_value_complete;
    p->settings.on_headers_complete = h1_on_headers_complete;
    p->settings.on_body = h1_on_body;
    p->settings.on_message_complete = h1_on_message_complete;
    llhttp_init(&p->llh, kind == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &p->settings);
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
    p->err = PITOT_EOK;
    p->reason = NULL;
    memset(&p->msg, 0, sizeof(p->msg));
    p->msg.content_length = -1;
}

void h1_expect_no_body(struct h1_parser *p)
{
    p->no_body = true;
}

size_t h1_head_len(struct span in)
{
    size_t i = 0;

    /* Empty lines before a request line are ignored (RFC 9112 2.2), by
     * llhttp too: they belong to the head that follows. */
    while (i < in.len && (in.p[i] == '\r' || in.p[i] == '\n'))
        i++;
    /* The head ends at the first empty line: "\n\n" or "\n\r\n". */
    for (; i + 1 < in.len; i++) {
        if (in.p[i] != '\n')
            continue;
        if (in.p[i + 1] == '\n')
            return i + 2;
        if (in.p[i + 1] == '\r' && i + 2 < in.len && in.p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
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

/* The head boundary we found is not llhttp's: never guess, reject. */
static enum h1_result h1_fail_head(struct h1_parser *p)
{
    p->err = p->kind == H1_REQUEST ? PITOT_EBAD_REQUEST : PITOT_EUPSTREAM_PROTOCOL;
    p->reason = "malformed line ending in head";
    p->phase = H1_PHASE_DONE;
    return H1_ERROR;
}

enum h1_result h1_execute(struct h1_parser *p, struct span in, size_t *consumed)
{
    llhttp_errno_t e;
    int phase_before = p->phase;

    *consumed = 0;
    if (p->done_pending) {
        p->done_pending = false;
        return H1_DONE;
    }
    if (p->phase == H1_PHASE_DONE)
        return H1_DONE;
    if (in.len == 0)
        return H1_AGAIN;
    e = llhttp_execute(&p->llh, in.p, in.len);
    if (e == HPE_OK) {
        /* The caller gives a whole head: if llhttp still wants more, it and
         * h1_head_len() disagree on where the head ends, e.g. a bare CR. */
        if (phase_before == H1_PHASE_HEAD)
            return h1_fail_head(p);
        *consumed = in.len;
        return H1_AGAIN;
    }
    if (e != HPE_PAUSED)
        return h1_error(p, e);
    *consumed = (size_t)(llhttp_get_error_pos(&p->llh) - in.p);
    llhttp_resume(&p->llh);
    if (phase_before == H1_PHASE_HEAD) {
        if (*consumed != h1_head_len(in))
            return h1_fail_head(p);
        /* Paused at the end of the head, or (no body) at the message's end. */
        if (p->phase == H1_PHASE_DONE)
            p->done_pending = true;
        return H1_HEAD;
    }
    return p->phase == H1_PHASE_DONE ? H1_DONE : H1_AGAIN;
}

enum h1_result h1_finish(struct h1_parser *p)
{
    llhttp_errno_t e;

    if (p->phase == H1_PHASE_DONE)
        return H1_DONE;
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
    for (i = 0; i < m->nheaders; i++)
        if (span_ieq(m->headers[i].name, "connection") && h1_list_has(m->headers[i].value, name))
            return true;
    return false;
}

bool h1_status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}
