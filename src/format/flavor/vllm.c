/* flavor vllm: vLLM's API server. One series per engine (data parallel), all
 * summed. kv_cache_usage_perc is a 0-1 fraction despite its name; releases
 * before V1 called it gpu_cache_usage_perc. */
#include "pitot/format/flavor.h"

static const struct flv_signal vllm_signals[] = {
    { "vllm:num_requests_running", FLV_RUNNING },
    { "vllm:num_requests_waiting", FLV_WAITING },
    { "vllm:kv_cache_usage_perc", FLV_CACHE_RATIO },
    { "vllm:gpu_cache_usage_perc", FLV_CACHE_RATIO },
};

const struct flv_dialect flv_dialect_vllm = {
    CFG_FLAVOR_VLLM, "vllm", "vllm:", vllm_signals, sizeof(vllm_signals) / sizeof(vllm_signals[0]),
};
