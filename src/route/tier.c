/* tier: request tiers from API keys (Authorization: Bearer or x-api-key;
 * SHA-256 digests, constant-time compare) or a trusted header, and the
 * per-tier SLO verdict. */
#include "pitot/route/tier.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pitot/format/http1.h"

#define TIER_DIGEST_BYTES 32

static bool tier_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* s without leading and trailing blanks. */
static struct span tier_trim(struct span s)
{
    if (s.p == NULL)
        return span_make("", 0);
    while (s.len > 0 && tier_blank(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && tier_blank(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* The key of "Bearer <key>" (scheme case-insensitive, then one or more
 * blanks); false when the value is anything else. */
static bool tier_bearer_key(struct span auth, struct span *key)
{
    static const char scheme[] = "Bearer";
    const size_t n = sizeof(scheme) - 1;

    auth = tier_trim(auth);
    if (auth.len <= n || !span_ieq(span_make(auth.p, n), scheme) || !tier_blank(auth.p[n]))
        return false;
    *key = tier_trim(span_make(auth.p + n, auth.len - n));
    return key->len > 0;
}

/* The index in c->keys of an API key (the key itself, blanks around it
 * already trimmed), or -1. Every configured digest is compared, and the
 * match is selected without a branch on it, so the time taken does not
 * depend on which key (if any) matched. */
static int tier_key_index(const struct cfg *c, struct span key)
{
    unsigned char d[TIER_DIGEST_BYTES];
    unsigned found = 0, hit = 0;
    size_t i;

    if (c->nkeys == 0 || key.len == 0)
        return -1;
    if (EVP_Digest(key.p, key.len, d, NULL, EVP_sha256(), NULL) != 1)
        return -1;
    for (i = 0; i < c->nkeys && i < CFG_MAX_KEYS; i++) {
        unsigned eq = (unsigned)(CRYPTO_memcmp(d, c->keys[i].sha256, sizeof(d)) == 0);
        unsigned mask = 0u - eq;
        found = (found & ~mask) | ((unsigned)i & mask);
        hit |= eq;
    }
    OPENSSL_cleanse(d, sizeof(d));
    return hit && c->key_tier[found] < c->ntiers ? (int)found : -1;
}

/* The key index of the key of an Authorization value "Bearer <key>", or -1. */
static int tier_of_bearer(const struct cfg *c, struct span auth)
{
    struct span key;

    return tier_bearer_key(auth, &key) ? tier_key_index(c, key) : -1;
}

unsigned tier_resolve_values(const struct cfg *c, struct span authorization, struct span x_api_key,
                             struct span tier_header_value, int *key)
{
    struct span v;
    size_t i;
    int k = tier_of_bearer(c, authorization);

    if (k < 0)
        k = tier_key_index(c, tier_trim(x_api_key));
    if (key)
        *key = k;
    if (k >= 0)
        return c->key_tier[k];
    if (c->tier_header[0] == '\0')
        return 0;
    v = tier_trim(tier_header_value);
    for (i = 0; v.len > 0 && i < c->ntiers; i++)
        if (!c->tiers[i].spare && span_eq(v, c->tiers[i].name))
            return (unsigned)i;
    return 0;
}

/* The value of the one field `name` of m; {NULL, 0} when there is none or
 * more than one: a credential given twice is ambiguous (another hop may read
 * the other one), so neither counts. */
static struct span tier_field_once(const struct h1_msg *m, const char *name)
{
    struct span v = span_make(NULL, 0);
    unsigned i, n = 0;

    for (i = 0; i < m->nheaders; i++) {
        if (span_ieq(m->headers[i].name, name)) {
            v = m->headers[i].value;
            n++;
        }
    }
    return n == 1 ? v : span_make(NULL, 0);
}

unsigned tier_resolve(const struct cfg *c, const struct h1_msg *m, int *key)
{
    struct span auth = span_make(NULL, 0), apikey = span_make(NULL, 0);
    const struct h1_header *th = NULL;

    if (c->nkeys > 0) {
        auth = tier_field_once(m, "Authorization");
        apikey = tier_field_once(m, "x-api-key");
    }
    if (c->tier_header[0] != '\0')
        th = h1_header_find(m, c->tier_header);
    return tier_resolve_values(c, auth, apikey, th ? th->value : span_make(NULL, 0), key);
}

bool tier_slo_met(const struct cfg_tier *t, int64_t ttft_us, int64_t tpot_us,
                  int64_t completion_tokens)
{
    if (t->slo_ttft_ms > 0 && (ttft_us < 0 || ttft_us > (int64_t)t->slo_ttft_ms * 1000))
        return false;
    if (t->slo_tpot_ms > 0 && completion_tokens > 1 &&
        (tpot_us < 0 || tpot_us > (int64_t)t->slo_tpot_ms * 1000))
        return false;
    return true;
}
