/* meter: per-request TTFT, inter-token gaps, tokens, refusal and truncation. */
#include "pitot/measure/meter.h"

#include <stddef.h>
#include <string.h>

void meter_init(struct meter *m, uint64_t t0_us, uint64_t stall_us, int64_t max_tokens,
                const struct refusal_phrases *ph)
{
    memset(m, 0, offsetof(struct meter, gaps_us));
    m->t0_us = t0_us;
    m->stall_us = stall_us;
    m->max_tokens = max_tokens;
    m->usage_prompt = m->usage_completion = m->usage_cached = -1;
    m->timings_prompt = m->timings_predicted = m->timings_cached = -1;
    quantile_p2_init(&m->itl_p50);
    refusal_match_init(&m->refusals, ph);
}

static void meter_refusal_text(struct meter *m, struct span raw)
{
    char buf[REFUSAL_WINDOW_BYTES];
    size_t n;

    if (m->refusal || m->refusals.chars >= REFUSAL_WINDOW_CHARS || raw.len == 0)
        return;
    /* The window holds at most REFUSAL_WINDOW_BYTES of text: decoding more of a
     * long chunk could not change the verdict. */
    n = json_str_decode(raw, buf, sizeof(buf));
    if (refusal_match_feed(&m->refusals, buf, n))
        m->refusal = true;
}

bool meter_event(struct meter *m, const struct json_resp *r, uint64_t now_us, uint64_t *gap_us)
{
    if (!r->valid)
        return false;
    if (r->is_error)
        m->error_event = true;
    if (r->has_usage) {
        /* The last usage wins: vLLM may repeat running totals on every chunk. */
        if (r->prompt_tokens >= 0)
            m->usage_prompt = r->prompt_tokens;
        if (r->completion_tokens >= 0)
            m->usage_completion = r->completion_tokens;
        if (r->cached_tokens >= 0)
            m->usage_cached = r->cached_tokens;
    }
    if (r->has_timings) {
        if (r->timings_prompt_n >= 0)
            m->timings_prompt = r->timings_prompt_n;
        if (r->timings_predicted_n >= 0)
            m->timings_predicted = r->timings_predicted_n;
        if (r->timings_cache_n >= 0)
            m->timings_cached = r->timings_cache_n;
    }
    if (r->finish != JSON_FINISH_NONE && m->finish == JSON_FINISH_NONE)
        m->finish = r->finish;
    if (r->finish == JSON_FINISH_CONTENT_FILTER || r->has_refusal)
        m->refusal = true;
    if (!r->has_output)
        return false;
    meter_refusal_text(m, r->text);
    if (m->n_out++ == 0) {
        m->first_us = now_us;
        m->last_us = now_us;
        *gap_us = 0;
        return true;
    }
    *gap_us = now_us >= m->last_us ? now_us - m->last_us : 0;
    m->last_us = now_us;
    if (*gap_us > m->itl_max_us)
        m->itl_max_us = *gap_us;
    if (m->stall_us && *gap_us > m->stall_us)
        m->stalls++;
    if (m->n_out - 2 < METER_GAPS_EXACT)
        m->gaps_us[m->n_out - 2] = *gap_us > UINT32_MAX ? UINT32_MAX : (uint32_t)*gap_us;
    quantile_p2_add(&m->itl_p50, (double)*gap_us);
    return true;
}

/* 1 when the answer ended on a stop token that was never streamed (EOS or
 * a stop string): a "stop" finish, unless the output already reached the
 * request's limit (llama.cpp's Responses API says "completed" then too). */
static int meter_stop_token(const struct meter *m)
{
    return m->finish == JSON_FINISH_STOP &&
           !(m->max_tokens > 0 && m->n_out >= (uint64_t)m->max_tokens);
}

/* k-th smallest of a[0..n) (Hoare selection; reorders a). */
static uint32_t meter_select(uint32_t *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;

    while (lo < hi) {
        uint32_t pivot = a[lo + (hi - lo) / 2], t;
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

/* Median of the gaps: exact while every gap was kept, else P-square. */
static int64_t meter_itl_median(const struct meter *m)
{
    uint32_t tmp[METER_GAPS_EXACT];
    size_t n = (size_t)(m->n_out - 1);
    uint64_t lo, hi;

    if (n > METER_GAPS_EXACT)
        return (int64_t)(quantile_p2_get(&m->itl_p50) + 0.5);
    memcpy(tmp, m->gaps_us, n * sizeof(tmp[0]));
    hi = meter_select(tmp, n, n / 2);
    if (n % 2)
        return (int64_t)hi;
    lo = meter_select(tmp, n, n / 2 - 1);
    return (int64_t)((lo + hi + 1) / 2);
}

void meter_body(struct meter *m, const struct json_resp *r)
{
    struct json_resp copy = *r;
    uint64_t gap;

    if (r->has_output)
        meter_refusal_text(m, r->text);
    copy.has_output = false;
    meter_event(m, &copy, 0, &gap);
}

void meter_finish(const struct meter *m, uint64_t end_us, struct meter_result *out)
{
    out->e2e_us = end_us >= m->t0_us ? (int64_t)(end_us - m->t0_us) : 0;
    out->ttft_us = m->n_out ? (int64_t)(m->first_us - m->t0_us) : -1;
    out->itl_max_us = m->n_out > 1 ? (int64_t)m->itl_max_us : -1;
    out->itl_p50_us = m->n_out > 1 ? meter_itl_median(m) : -1;
    out->prompt_tokens = out->completion_tokens = out->cached_tokens = -1;
    if (m->usage_completion >= 0 || m->usage_prompt >= 0) {
        out->tok_src = METER_TOK_USAGE;
        out->prompt_tokens = m->usage_prompt;
        out->completion_tokens = m->usage_completion;
        out->cached_tokens = m->usage_cached;
        if (out->completion_tokens < 0 && m->timings_predicted >= 0) {
            out->completion_tokens = m->timings_predicted;
        } else if (out->completion_tokens < 0 && m->n_out) {
            /* A Messages stream cut before its message_delta: the prompt
             * came in message_start, the output is counted. */
            out->tok_src = METER_TOK_COUNTED;
            out->completion_tokens = (int64_t)m->n_out;
        }
    } else if (m->timings_predicted >= 0 || m->timings_prompt >= 0) {
        out->tok_src = METER_TOK_TIMINGS;
        /* llama.cpp prompt_n excludes the cached part; usage counts both. */
        if (m->timings_prompt >= 0)
            out->prompt_tokens =
                m->timings_prompt + (m->timings_cached > 0 ? m->timings_cached : 0);
        out->completion_tokens = m->timings_predicted;
        out->cached_tokens = m->timings_cached;
    } else if (m->n_out) {
        out->tok_src = METER_TOK_COUNTED;
        /* A "stop" finish (EOS or a stop string) costs one generated token
         * that is never streamed: the server counts output events + 1. */
        out->completion_tokens = (int64_t)m->n_out + meter_stop_token(m);
    } else {
        out->tok_src = METER_TOK_NONE;
    }
    out->tpot_us = -1;
    if (out->ttft_us >= 0 && out->completion_tokens > 1)
        out->tpot_us = (out->e2e_us - out->ttft_us) / (out->completion_tokens - 1);
    out->truncated = m->finish == JSON_FINISH_LENGTH ||
                     (m->max_tokens > 0 && out->completion_tokens >= m->max_tokens);
}
