/* flavor llamacpp: llama.cpp's llama-server (`--metrics`). It has no cache
 * gauge: slots are its capacity (see flv_props_slots()). */
#include "pitot/format/flavor.h"

static const struct flv_signal llamacpp_signals[] = {
    { "llamacpp:requests_processing", FLV_RUNNING },
    { "llamacpp:requests_deferred", FLV_WAITING },
};

const struct flv_dialect flv_dialect_llamacpp = {
    CFG_FLAVOR_LLAMACPP,
    "llamacpp",
    "llamacpp:",
    llamacpp_signals,
    sizeof(llamacpp_signals) / sizeof(llamacpp_signals[0]),
};
