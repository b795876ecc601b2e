/* flavor sglang: SGLang's scheduler metrics, one series per rank (and per
 * pid in multiprocess mode). token_usage is the KV pool fraction in use. */
#include "pitot/format/flavor.h"

static const struct flv_signal sglang_signals[] = {
    { "sglang:num_running_reqs", FLV_RUNNING },
    { "sglang:num_queue_reqs", FLV_WAITING },
    { "sglang:token_usage", FLV_CACHE_RATIO },
};

const struct flv_dialect flv_dialect_sglang = {
    CFG_FLAVOR_SGLANG,
    "sglang",
    "sglang:",
    sglang_signals,
    sizeof(sglang_signals) / sizeof(sglang_signals[0]),
};
