/* flavor tgi: Hugging Face text-generation-inference's router. Cache pressure
 * is the token budget in use: the current batch's max tokens over the
 * largest total the batch may hold. */
#include "pitot/format/flavor.h"

static const struct flv_signal tgi_signals[] = {
    { "tgi_batch_current_size", FLV_RUNNING },
    { "tgi_queue_size", FLV_WAITING },
    { "tgi_batch_current_max_tokens", FLV_CACHE_USED },
    { "tgi_batch_max_total_tokens", FLV_CACHE_TOTAL },
};

const struct flv_dialect flv_dialect_tgi = {
    CFG_FLAVOR_TGI, "tgi", "tgi_", tgi_signals, sizeof(tgi_signals) / sizeof(tgi_signals[0]),
};
