/* Unit tests for dns: address equality, the family filter and the stable
 * slot assignment (no resolver, no network). */
#include "pitot/route/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* "1.2.3.4:80" or "[::1]:80" into a. */
static struct dns_addr A(const char *s) {
    struct dns_addr a;
    char ip[64];
    const char *colon = strrchr(s, ':');
    unsigned port = (unsigned)atoi(colon + 1);

    memset(&a, 0, sizeof(a));
    if (s[0] == '[') {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
        snprintf(ip, sizeof(ip), "%.*s", (int)(colon - s - 2), s + 1);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
        a.len = sizeof(*v6);
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
        snprintf(ip, sizeof(ip), "%.*s", (int)(colon - s), s);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, ip, &v4->sin_addr), 1);
        a.len = sizeof(*v4);
    }
    return a;
}

static const char *
F(const struct dns_addr *a)
{
    static char buf[4][64];
    static int k;

    k = (k + 1) % 4;
    dns_addr_fmt(a, buf[k], sizeof(buf[k]));
    return buf[k];
}

static void test_addr_eq_and_fmt(void **state)
{
    struct dns_addr a = A("10.0.0.1:8080"), b = A("10.0.0.1:8080"), c = A("10.0.0.1:8081"),
                    d = A("10.0.0.2:8080"), e = A("[::1]:8080"), f = A("[::1]:8080"), none;

    memset(&none, 0, sizeof(none));
    assert_true(dns_addr_eq(&a, &b));
    assert_false(dns_addr_eq(&a, &c)); /* port */
    assert_false(dns_addr_eq(&a, &d)); /* address */
    assert_false(dns_addr_eq(&a, &e)); /* family */
    assert_true(dns_addr_eq(&e, &f));
    assert_false(dns_addr_eq(&none, &none)); /* empty is no address */
    assert_string_equal(F(&a), "10.0.0.1:8080");
    assert_string_equal(F(&e), "[::1]:8080");
    assert_string_equal(F(&none), "none");
    (void)state;
}

static void test_filter(void **state)
{
    struct dns_addr in[6], a[6];
    size_t n;

    in[0] = A("[fd00::1]:80");
    in[1] = A("10.0.0.1:80");
    in[2] = A("10.0.0.2:80");
    in[3] = A("10.0.0.1:80"); /* duplicate */
    in[4] = A("[fd00::2]:80");
    in[5] = A("[fd00::1]:80"); /* duplicate */

    memcpy(a, in, sizeof(a)); /* auto: IPv4 when there is any */
    n = dns_filter(a, 6, CFG_DNS_AUTO);
    assert_int_equal(n, 2);
    assert_string_equal(F(&a[0]), "10.0.0.1:80");
    assert_string_equal(F(&a[1]), "10.0.0.2:80");

    memcpy(a, in, sizeof(a));
    n = dns_filter(a, 6, CFG_DNS_IPV6);
    assert_int_equal(n, 2);
    assert_string_equal(F(&a[0]), "[fd00::1]:80");
    assert_string_equal(F(&a[1]), "[fd00::2]:80");

    memcpy(a, in, sizeof(a)); /* any: both, in answer order */
    n = dns_filter(a, 6, CFG_DNS_ANY);
    assert_int_equal(n, 4);
    assert_string_equal(F(&a[0]), "[fd00::1]:80");
    assert_string_equal(F(&a[1]), "10.0.0.1:80");
    assert_string_equal(F(&a[2]), "10.0.0.2:80");
    assert_string_equal(F(&a[3]), "[fd00::2]:80");

    memcpy(a, in, sizeof(a));
    assert_int_equal(dns_filter(a, 6, CFG_DNS_IPV4), 2);

    a[0] = A("[fd00::1]:80"); /* auto without IPv4: the IPv6 ones */
    a[1] = A("[fd00::2]:80");
    assert_int_equal(dns_filter(a, 2, CFG_DNS_AUTO), 2);
    a[0] = A("[fd00::1]:80");
    assert_int_equal(dns_filter(a, 1, CFG_DNS_IPV4), 0); /* none wanted */
    (void)state;
}

static void test_assign_stable(void **state)
{
    struct dns_addr slots[4], ans[4];
    enum dns_change chg[4];

    memset(slots, 0, sizeof(slots));
    /* first answer: in order, lowest slots */
    ans[0] = A("10.0.0.1:80");
    ans[1] = A("10.0.0.2:80");
    assert_int_equal(dns_assign(slots, 4, ans, 2, chg), 0);
    assert_string_equal(F(&slots[0]), "10.0.0.1:80");
    assert_string_equal(F(&slots[1]), "10.0.0.2:80");
    assert_int_equal(slots[2].len, 0);
    assert_int_equal(chg[0], DNS_ADDED);
    assert_int_equal(chg[1], DNS_ADDED);
    assert_int_equal(chg[2], DNS_SAME);
    assert_int_equal(chg[3], DNS_SAME);

    /* the same set in another order (DNS round robin): nothing moves */
    ans[0] = A("10.0.0.2:80");
    ans[1] = A("10.0.0.1:80");
    assert_int_equal(dns_assign(slots, 4, ans, 2, chg), 0);
    assert_string_equal(F(&slots[0]), "10.0.0.1:80");
    assert_string_equal(F(&slots[1]), "10.0.0.2:80");
    for (int i = 0; i < 4; i++)
        assert_int_equal(chg[i], DNS_SAME);

    /* one more: the next empty slot */
    ans[2] = A("10.0.0.3:80");
    assert_int_equal(dns_assign(slots, 4, ans, 3, chg), 0);
    assert_string_equal(F(&slots[2]), "10.0.0.3:80");
    assert_int_equal(chg[2], DNS_ADDED);
    assert_int_equal(chg[0], DNS_SAME);

    /* the first goes: its slot empties, the others stay put */
    ans[0] = A("10.0.0.2:80");
    ans[1] = A("10.0.0.3:80");
    assert_int_equal(dns_assign(slots, 4, ans, 2, chg), 0);
    assert_int_equal(slots[0].len, 0);
    assert_int_equal(chg[0], DNS_REMOVED);
    assert_string_equal(F(&slots[1]), "10.0.0.2:80");
    assert_string_equal(F(&slots[2]), "10.0.0.3:80");
    assert_int_equal(chg[1], DNS_SAME);
    assert_int_equal(chg[2], DNS_SAME);

    /* a new one takes the lowest empty slot */
    ans[2] = A("10.0.0.9:80");
    assert_int_equal(dns_assign(slots, 4, ans, 3, chg), 0);
    assert_string_equal(F(&slots[0]), "10.0.0.9:80");
    assert_int_equal(chg[0], DNS_ADDED);

    /* one leaves and another arrives in the same answer: replaced */
    ans[0] = A("10.0.0.7:80");
    ans[1] = A("10.0.0.3:80");
    ans[2] = A("10.0.0.9:80");
    assert_int_equal(dns_assign(slots, 4, ans, 3, chg), 0);
    assert_string_equal(F(&slots[0]), "10.0.0.9:80");
    assert_string_equal(F(&slots[1]), "10.0.0.7:80");
    assert_string_equal(F(&slots[2]), "10.0.0.3:80");
    assert_int_equal(chg[1], DNS_REPLACED);
    assert_int_equal(chg[0], DNS_SAME);
    assert_int_equal(chg[2], DNS_SAME);
    (void)state;
}

static void test_assign_overflow(void **state)
{
    struct dns_addr slots[2], ans[4];
    enum dns_change chg[2];

    memset(slots, 0, sizeof(slots));
    ans[0] = A("10.0.0.1:80");
    ans[1] = A("10.0.0.2:80");
    ans[2] = A("10.0.0.3:80");
    ans[3] = A("10.0.0.4:80");
    /* two slots, four addresses: two are left out and counted */
    assert_int_equal(dns_assign(slots, 2, ans, 4, chg), 2);
    assert_string_equal(F(&slots[0]), "10.0.0.1:80");
    assert_string_equal(F(&slots[1]), "10.0.0.2:80");
    /* the next answer lists them in another order: the slotted ones stay */
    ans[0] = A("10.0.0.4:80");
    ans[1] = A("10.0.0.2:80");
    ans[2] = A("10.0.0.3:80");
    ans[3] = A("10.0.0.1:80");
    assert_int_equal(dns_assign(slots, 2, ans, 4, chg), 2);
    assert_string_equal(F(&slots[0]), "10.0.0.1:80");
    assert_string_equal(F(&slots[1]), "10.0.0.2:80");
    assert_int_equal(chg[0], DNS_SAME);
    assert_int_equal(chg[1], DNS_SAME);
    /* an empty answer empties every slot (callers keep the set instead) */
    assert_int_equal(dns_assign(slots, 2, ans, 0, chg), 0);
    assert_int_equal(chg[0], DNS_REMOVED);
    assert_int_equal(chg[1], DNS_REMOVED);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_eq_and_fmt),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_assign_stable),
        cmocka_unit_test(test_assign_overflow),
    };

    return cmocka_run_group_tests_name("dns", tests, NULL, NULL);
}
