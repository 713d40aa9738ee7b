/*
 * A small test harness: TEST() registers a function, the runner executes
 * each test in its own forked process with a timeout, and the ASSERT_*
 * macros print both operands before failing.
 *
 * Usage:
 *   TEST(raft, elects_leader) { ASSERT_INT_EQ(rv, 0); }
 * Run:  ./test_binary            all tests
 *       ./test_binary PATTERN    tests whose "suite/name" contains PATTERN
 * Environment: RKV_TEST_TIMEOUT_S (default 300) per test.
 * The last line is "N passed, N failed", and the exit status is 1 on any
 * failure.
 *
 * Assertions are never compiled out: they do not use assert().
 */
#ifndef RKV_TEST_H
#define RKV_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*rkv_test_fn)(void);

void rkv_test_register(const char *suite, const char *name, rkv_test_fn fn);
/* Fails the current test; never returns. */
void rkv_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
/* Returns a fresh empty folder that is removed when the test ends. */
const char *rkv_test_tmpdir(void);

#define TEST(suite, name)                                                      \
    static void test_##suite##_##name(void);                                   \
    __attribute__((constructor)) static void register_##suite##_##name(void)   \
    {                                                                          \
        rkv_test_register(#suite, #name, test_##suite##_##name);               \
    }                                                                          \
    static void test_##suite##_##name(void)

#define ASSERT_TRUE(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            rkv_test_fail(__FILE__, __LINE__, "expected true: %s", #cond);     \
        }                                                                      \
    } while (0)

#define ASSERT_FALSE(cond)                                                     \
    do {                                                                       \
        if (cond) {                                                            \
            rkv_test_fail(__FILE__, __LINE__, "expected false: %s", #cond);    \
        }                                                                      \
    } while (0)

#define ASSERT_INT_OP(a, op, b)                                                \
    do {                                                                       \
        long long a_ = (long long)(a);                                         \
        long long b_ = (long long)(b);                                         \
        if (!(a_ op b_)) {                                                     \
            rkv_test_fail(__FILE__, __LINE__, "%s %s %s: %lld vs %lld", #a,    \
                          #op, #b, a_, b_);                                    \
        }                                                                      \
    } while (0)

#define ASSERT_UINT_OP(a, op, b)                                               \
    do {                                                                       \
        unsigned long long a_ = (unsigned long long)(a);                       \
        unsigned long long b_ = (unsigned long long)(b);                       \
        if (!(a_ op b_)) {                                                     \
            rkv_test_fail(__FILE__, __LINE__, "%s %s %s: %llu vs %llu", #a,    \
                          #op, #b, a_, b_);                                    \
        }                                                                      \
    } while (0)

#define ASSERT_INT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_INT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_INT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_INT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_INT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_INT_GE(a, b) ASSERT_INT_OP(a, >=, b)
#define ASSERT_UINT_EQ(a, b) ASSERT_UINT_OP(a, ==, b)
#define ASSERT_UINT_NE(a, b) ASSERT_UINT_OP(a, !=, b)
#define ASSERT_UINT_LT(a, b) ASSERT_UINT_OP(a, <, b)
#define ASSERT_UINT_LE(a, b) ASSERT_UINT_OP(a, <=, b)
#define ASSERT_UINT_GT(a, b) ASSERT_UINT_OP(a, >, b)
#define ASSERT_UINT_GE(a, b) ASSERT_UINT_OP(a, >=, b)

/* Asserts rv == 0 and names the error otherwise. */
#define ASSERT_OK(expr)                                                        \
    do {                                                                       \
        int rv_ = (expr);                                                      \
        if (rv_ != 0) {                                                        \
            rkv_test_fail(__FILE__, __LINE__, "%s returned %d (%s)", #expr,    \
                          rv_, rkv_test_errname(rv_));                         \
        }                                                                      \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                    \
    do {                                                                       \
        const char *a_ = (a);                                                  \
        const char *b_ = (b);                                                  \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                 \
            rkv_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" vs \"%s\"",    \
                          #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");     \
        }                                                                      \
    } while (0)

#define ASSERT_MEM_EQ(a, a_len, b, b_len)                                      \
    do {                                                                       \
        size_t al_ = (a_len);                                                  \
        size_t bl_ = (b_len);                                                  \
        if (al_ != bl_ || (al_ > 0 && memcmp((a), (b), al_) != 0)) {           \
            rkv_test_fail(__FILE__, __LINE__,                                  \
                          "%s == %s: %zu bytes vs %zu bytes differ", #a, #b,   \
                          al_, bl_);                                           \
        }                                                                      \
    } while (0)

/* Error name without linking common: tests link it anyway. */
const char *rkv_test_errname(int rv);

#endif /* RKV_TEST_H */
