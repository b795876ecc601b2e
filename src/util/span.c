/* span: helpers on borrowed byte ranges. */
#include "pitot/util/span.h"

#include <stdint.h>

bool span_iprefix(struct span s, const char *lit)
{
    size_t n = strlen(lit);

    return s.len >= n && span_ieq(span_make(s.p, n), lit);
}

bool span_ieq(struct span s, const char *lit)
{
    size_t i;
    size_t n = strlen(lit);

    if (s.len != n)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

int span_to_i64(struct span s, long long *out)
{
    long long v = 0;
    size_t i;

    if (s.len == 0)
        return -1;
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c < '0' || c > '9')
            return -1;
        if (v > (INT64_MAX - (c - '0')) / 10)
            return -1;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}
