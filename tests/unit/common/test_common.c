/* Checks the common layer: error names, big-endian helpers, alloc faults. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>

#include "tests/lib/test.h"

/* Every project code has a name and a message distinct from errno's. */
TEST(common, error_names)
{
    ASSERT_STR_EQ(rkv_errname(RKV_ENOTLEADER), "RKV_ENOTLEADER");
    ASSERT_STR_EQ(rkv_errname(-ENOENT), "ENOENT");
    ASSERT_STR_EQ(rkv_strerror(0), "success");
    ASSERT_STR_EQ(rkv_strerror(-12345), "unknown error");
    for (int code = RKV_ESQL; code <= RKV_EMALFORMED; code++) {
        ASSERT_TRUE(strncmp(rkv_errname(code), "RKV_E", 5) == 0);
    }
}

/* Big-endian encoding round-trips and sorts like the integers. */
TEST(common, big_endian_order)
{
    static const uint64_t values[] = {0, 1, 255, 256, 1ULL << 32,
                                      UINT64_MAX - 1, UINT64_MAX};
    uint8_t a[8];
    uint8_t b[8];

    for (size_t i = 0; i < RKV_ARRAY_SIZE(values); i++) {
        rkv_put_be64(a, values[i]);
        ASSERT_UINT_EQ(rkv_get_be64(a), values[i]);
        if (i + 1 < RKV_ARRAY_SIZE(values)) {
            rkv_put_be64(b, values[i + 1]);
            ASSERT_INT_LT(memcmp(a, b, 8), 0);
        }
    }
    rkv_put_be32(a, 0xdeadbeef);
    ASSERT_UINT_EQ(rkv_get_be32(a), 0xdeadbeef);
}

/* The fault switch fails exactly the allocations after the first n. */
TEST(common, alloc_fail_after)
{
    void *p;

    rkv_alloc_fail_after(1);
    p = rkv_malloc(8);
    ASSERT_TRUE(p != NULL);
    ASSERT_TRUE(rkv_malloc(8) == NULL);
    ASSERT_TRUE(rkv_calloc(1, 8) == NULL);
    rkv_alloc_fail_after(-1);
    rkv_free(p);
    p = rkv_memdup("abc", 3);
    ASSERT_MEM_EQ(p, 3, "abc", 3);
    rkv_free(p);
}

static int captured_lines;

static void capture_emit(void *data, enum rkv_log_level level,
                         uint64_t node_id, const char *subsys,
                         const char *file, int line, const char *message)
{
    (void)data;
    (void)file;
    (void)line;
    ASSERT_INT_EQ(level, RKV_WARN);
    ASSERT_UINT_EQ(node_id, 7);
    ASSERT_STR_EQ(subsys, "test");
    ASSERT_STR_EQ(message, "retrying peer=3 attempt=2");
    captured_lines++;
}

/* Messages below the level are dropped; others reach the emitter whole. */
TEST(common, log_emitter_and_level)
{
    rkv_log_set_emitter(capture_emit, NULL);
    rkv_log_set_thread_node_id(7);
    rkv_log_set_level(RKV_WARN);
    RKV_LOG(RKV_INFO, "not shown peer=%d", 3);
    RKV_LOG(RKV_WARN, "retrying peer=%d attempt=%d", 3, 2);
    rkv_log_set_emitter(NULL, NULL);
    ASSERT_INT_EQ(captured_lines, 1);
}
