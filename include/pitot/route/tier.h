/* tier: which tier a request belongs to (an API key, else a trusted header),
 * whether it carried a configured key at all (require_auth), and whether a
 * finished request met its tier's latency targets. */
#ifndef PITOT_ROUTE_TIER_H
#define PITOT_ROUTE_TIER_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/format/config.h"
#include "pitot/util/span.h"

struct h1_msg; /* include/pitot/h1.h */

/* The tier index (into c->tiers) of a request: the tier of its API key when
 * the key's SHA-256 matches a configured one (digests compared in constant
 * time, every key checked), else the tier named exactly by the value of the
 * header c->tier_header, when that is configured and names a tier, else 0
 * (default). The key is the one of "Authorization: Bearer <key>" when that
 * matches, else the value of "x-api-key: <key>" (Anthropic's header) when
 * that matches. A field that appears more than once counts as absent (a
 * credential given twice is ambiguous); of the tier header the first counts.
 * *key (when key is not NULL): the index in c->keys of the configured key
 * that matched, -1 when none did (require_auth asks one of every proxied
 * request; rate limits count by it). Never logs or keeps the key. */
unsigned tier_resolve(const struct cfg *c, const struct h1_msg *m, int *key);

/* The same from raw field values (tests, other callers). Any span may be
 * empty ({NULL, 0}). "Bearer" is case-insensitive and followed by one or more
 * spaces or tabs; blanks around the keys and around the tier name are
 * ignored. A malformed Authorization (another scheme, no key) matches no key;
 * x-api-key is the key alone, no scheme. */
unsigned tier_resolve_values(const struct cfg *c, struct span authorization, struct span x_api_key,
                             struct span tier_header_value, int *key);

/* Whether a finished request met tier t's SLO: every target that is set
 * (non-zero) must be met, a measurement equal to the target meets it.
 * ttft_us / tpot_us are -1 when not measured: a set target without a
 * measurement is not met, except the TPOT target when completion_tokens <= 1
 * (no gap between tokens to judge; -1 unknown counts as such), which is then
 * ignored. A tier without targets always meets them. */
bool tier_slo_met(const struct cfg_tier *t, int64_t ttft_us, int64_t tpot_us,
                  int64_t completion_tokens);

#endif
