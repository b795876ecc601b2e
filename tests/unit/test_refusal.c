/* Unit tests for refusal: refusal phrases matched across any feed split, case and
 * apostrophe insensitively, within the first REFUSAL_WINDOW_CHARS characters. */
#include "pitot/measure/refusal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct refusal_phrases *defaults;

static int group_setup(void **state)
{
    defaults = refusal_phrases_new(NULL, 0);
    (void)state;
    return defaults == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    refusal_phrases_free(defaults);
    (void)state;
    return 0;
}

/* Feeds text whole; returns the verdict. */
static bool feed_whole(const struct refusal_phrases *ph, const char *text)
{
    struct refusal_match m;

    refusal_match_init(&m, ph);
    return refusal_match_feed(&m, text, strlen(text));
}

/* A small deterministic generator for split points (xorshift32). */
static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Feeds text in pieces of 1..max bytes (max 1: byte by byte). Returns the
 * verdict, and checks it turns true exactly once the phrase is complete:
 * never before byte `at` (exclusive end of the first match), always after. */
static bool feed_split(const struct refusal_phrases *ph, const char *text, size_t max,
                       uint32_t seed, size_t at)
{
    struct refusal_match m;
    size_t len = strlen(text), off = 0;
    bool got = false;

    refusal_match_init(&m, ph);
    while (off < len) {
        size_t n = max == 1 ? 1 : 1 + rng_next(&seed) % max;

        if (n > len - off)
            n = len - off;
        got = refusal_match_feed(&m, text + off, n);
        off += n;
        if (at > 0)
            assert_int_equal(got, off >= at);
    }
    /* An empty feed changes nothing. */
    assert_int_equal(refusal_match_feed(&m, "", 0), got);
    return got;
}

static void test_default_list(void **state)
{
    size_t n, i;
    const char *const *list = refusal_default_list(&n);

    assert_int_equal(n, 20);
    assert_string_equal(list[0], "i'm sorry, but");
    assert_string_equal(list[n - 1], "i can't fulfill");
    for (i = 0; i < n; i++) {
        /* Each default matches itself, upper-cased, with a typographic apostrophe. */
        char up[64], typo[96];
        size_t k, j = 0;

        assert_true(feed_whole(defaults, list[i]));
        for (k = 0; list[i][k] != '\0'; k++) {
            char c = list[i][k];

            up[k] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
            if (c == '\'') {
                memcpy(typo + j, "\xE2\x80\x99", 3);
                j += 3;
            } else {
                typo[j++] = c;
            }
        }
        up[k] = '\0';
        typo[j] = '\0';
        assert_true(feed_whole(defaults, up));
        assert_true(feed_whole(defaults, typo));
    }
    (void)state;
}

static void test_sorry_split(void **state)
{
    const char *text = "I'm sorry, but I can't help with that.";
    size_t at = strlen("I'm sorry, but"), max;
    uint32_t seed;

    assert_true(feed_whole(defaults, text));
    assert_true(feed_split(defaults, text, 1, 1, at));
    for (max = 2; max <= 16; max++) {
        for (seed = 1; seed <= 50; seed++)
            assert_true(feed_split(defaults, text, max, seed * 2654435761u, at));
    }
    (void)state;
}

static void test_typographic_apostrophe(void **state)
{
    /* U+2019 split across feeds in every way, in text and in custom phrases. */
    const char *text = "Well. I\xE2\x80\x99m unable to do that.";
    size_t at = strlen("Well. I\xE2\x80\x99m unable to");
    static const char *const custom[] = { "Can\xE2\x80\x99t" };
    struct refusal_phrases *ph;
    uint32_t seed;

    assert_true(feed_split(defaults, text, 1, 1, at));
    for (seed = 1; seed <= 200; seed++)
        assert_true(feed_split(defaults, text, 5, seed, at));
    ph = refusal_phrases_new(custom, 1);
    assert_non_null(ph);
    assert_true(feed_whole(ph, "I can't."));
    assert_true(feed_whole(ph, "I CAN\xE2\x80\x99T."));
    assert_false(feed_whole(ph, "I can`t."));
    refusal_phrases_free(ph);
    /* A phrase that ends on the apostrophe, completed by its last byte. */
    {
        static const char *const tail[] = { "I can\xE2\x80\x99" };
        struct refusal_match m;

        ph = refusal_phrases_new(tail, 1);
        assert_non_null(ph);
        refusal_match_init(&m, ph);
        assert_false(refusal_match_feed(&m, "so i can\xE2\x80", 10));
        assert_true(refusal_match_feed(&m, "\x99", 1));
        assert_true(feed_split(ph, "I can\xE2\x80\x99t", 1, 1, 8));
        refusal_phrases_free(ph);
    }
    /* Other quotation marks stay what they are. */
    assert_false(feed_whole(defaults, "I\xE2\x80\x98m sorry, but"));
    assert_false(feed_whole(defaults, "I\xCA\xBCm sorry, but"));
    (void)state;
}

static void test_case_and_misses(void **state)
{
    assert_true(feed_whole(defaults, "AS AN AI LANGUAGE MODEL, I have no opinions."));
    assert_true(feed_whole(defaults, "Sure! ... i Must Decline."));
    assert_true(feed_whole(defaults, "x i cannot fulfillment"));
    assert_false(feed_whole(defaults, "I'm sorry but")); /* no comma */
    assert_false(feed_whole(defaults, "I am happy to help."));
    assert_false(feed_whole(defaults, "i  cannot help")); /* two spaces */
    assert_false(feed_whole(defaults, ""));
    (void)state;
}

static void test_sticky_and_window(void **state)
{
    char text[1024];
    struct refusal_match m;
    size_t i;

    /* Sticky: true stays true whatever follows. */
    refusal_match_init(&m, defaults);
    assert_true(refusal_match_feed(&m, "I must decline", 14));
    assert_true(refusal_match_feed(&m, "xyz", 3));
    assert_true(m.matched);

    /* A phrase ending exactly at character 400 matches; one char later not. */
    for (i = 0; i < 2; i++) {
        const char *p = "i must decline";
        size_t pad = REFUSAL_WINDOW_CHARS - strlen(p) + i;

        memset(text, 'a', pad);
        memcpy(text + pad, p, strlen(p) + 1);
        assert_int_equal(feed_whole(defaults, text), i == 0);
        assert_int_equal(feed_split(defaults, text, 1, 1, 0), i == 0);
    }
    /* Text after the window is ignored, even fed later. */
    refusal_match_init(&m, defaults);
    memset(text, 'b', REFUSAL_WINDOW_CHARS);
    assert_false(refusal_match_feed(&m, text, REFUSAL_WINDOW_CHARS));
    assert_int_equal(m.chars, REFUSAL_WINDOW_CHARS);
    assert_false(refusal_match_feed(&m, "I'm sorry, but", 14));
    assert_int_equal(m.len, REFUSAL_WINDOW_CHARS);
    (void)state;
}

static void test_utf8_counting(void **state)
{
    char text[2048];
    struct refusal_match m;
    size_t i, n = 0;

    /* 398 two-byte characters then "i must decline": only 2 of its characters
     * fit, so no match, though the bytes would. */
    for (i = 0; i < REFUSAL_WINDOW_CHARS - 2; i++) {
        memcpy(text + n, "\xC3\xA9", 2);
        n += 2;
    }
    memcpy(text + n, "i must decline", 15);
    refusal_match_init(&m, defaults);
    assert_false(refusal_match_feed(&m, text, strlen(text)));
    assert_int_equal(m.chars, REFUSAL_WINDOW_CHARS);
    assert_int_equal(m.len, (REFUSAL_WINDOW_CHARS - 2) * 2 + 2);

    /* Four-byte characters fill the window's bytes exactly; a character
     * split across feeds keeps all its bytes. */
    refusal_match_init(&m, defaults);
    for (i = 0; i < REFUSAL_WINDOW_CHARS; i++) {
        assert_false(refusal_match_feed(&m, "\xF0\x9F", 2));
        assert_false(refusal_match_feed(&m, "\x98\x80", 2));
    }
    assert_int_equal(m.chars, REFUSAL_WINDOW_CHARS);
    assert_int_equal(m.len, REFUSAL_WINDOW_BYTES);
    assert_false(refusal_match_feed(&m, "i must decline", 14));

    /* Multi-byte text before a phrase: counted as characters, not bytes. */
    n = 0;
    for (i = 0; i < 300; i++) {
        memcpy(text + n, "\xE6\x97\xA5", 3);
        n += 3;
    }
    memcpy(text + n, " I cannot help", 15);
    assert_true(feed_whole(defaults, text));
    assert_true(feed_split(defaults, text, 7, 99, n + 14));
    (void)state;
}

static void test_custom_list(void **state)
{
    static const char *const list[] = { "NOPE", NULL, "", "Refuse To" };
    struct refusal_phrases *ph = refusal_phrases_new(list, 4);
    struct refusal_match m;

    assert_non_null(ph);
    assert_true(feed_whole(ph, "nope"));
    assert_true(feed_whole(ph, "I refuse to."));
    assert_true(feed_split(ph, "well, I REFUSE TO answer", 1, 1, strlen("well, I REFUSE TO")));
    /* Empty and NULL entries are skipped, not matching everything. */
    assert_false(feed_whole(ph, "fine"));
    /* The defaults are not in a custom list. */
    assert_false(feed_whole(ph, "I'm sorry, but no"));
    refusal_phrases_free(ph);

    /* Only empty phrases: nothing matches; NULL list: nothing to match with. */
    {
        static const char *const empty[] = { "" };

        ph = refusal_phrases_new(empty, 1);
        assert_non_null(ph);
        assert_false(feed_whole(ph, "anything"));
        refusal_phrases_free(ph);
    }
    refusal_match_init(&m, NULL);
    assert_false(refusal_match_feed(&m, "I'm sorry, but", 14));
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_list),
        cmocka_unit_test(test_sorry_split),
        cmocka_unit_test(test_typographic_apostrophe),
        cmocka_unit_test(test_case_and_misses),
        cmocka_unit_test(test_sticky_and_window),
        cmocka_unit_test(test_utf8_counting),
        cmocka_unit_test(test_custom_list),
    };

    return cmocka_run_group_tests_name("rfs", tests, group_setup, group_teardown);
}
