/* Fuzz target for the admin listener's hostile inputs (status): the path of
 * POST /admin/backends/{name}/{action} and the Authorization value checked
 * against admin_token. Each input is copied into an allocation of exactly its
 * size, so a read past it fails under ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/config.h"
#include "pitot/serve/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[CFG_NAME_MAX], *p = malloc(size ? size : 1), *tok, *auth;
    const uint8_t *nl = memchr(data, '\n', size);
    enum status_action a;
    size_t i, n, tn;

    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    /* the whole input as a path */
    a = status_backend_path(span_make(p, size), name, sizeof(name));
    if (a != STATUS_ACT_NONE) {
        n = strlen(name);
        if (n == 0 || n >= sizeof(name))
            abort();
        for (i = 0; i < n; i++)
            if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e)
                abort();
    }
    free(p);

    /* "token\nauthorization value": any value, and the token's own Bearer */
    tn = nl ? (size_t)(nl - data) : size;
    tok = malloc(tn + 1);
    auth = malloc(tn + 8);
    if (tok == NULL || auth == NULL) {
        free(tok);
        free(auth);
        return 0;
    }
    memcpy(tok, data, tn);
    tok[tn] = '\0';
    if (nl) {
        size_t an = size - tn - 1;
        char *v = malloc(an ? an : 1);
        if (v) {
            memcpy(v, nl + 1, an);
            (void)status_token_ok(tok, span_make(v, an));
            free(v);
        }
    }
    /* a token without NUL, blanks or a leading/trailing blank is accepted as
     * "Bearer <token>" and refused with one byte less */
    if (tn > 0 && strlen(tok) == tn && strcspn(tok, " \t") == tn) {
        memcpy(auth, "Bearer ", 7);
        memcpy(auth + 7, tok, tn);
        if (!status_token_ok(tok, span_make(auth, tn + 7)))
            abort();
        if (tn > 1 && status_token_ok(tok, span_make(auth, tn + 6)))
            abort();
    }
    free(tok);
    free(auth);
    return 0;
}
