/*
 * The bottom layer every rangekv module builds on: error codes, one levelled
 * logging macro, and the allocator that tests can make fail.
 *
 * Logging: each .c file defines RKV_LOG_SUBSYS ("raft", "range", "node",
 * "client", "bench", "sql") before including this header, then calls
 *   RKV_LOG(RKV_INFO, "became leader range=%llu term=%llu", ...);
 * Messages are one lowercase line with identifiers as key=value.
 *
 * Allocation: rkv_malloc/rkv_calloc/rkv_realloc/rkv_free wrap the C library.
 * rkv_alloc_fail_after(n) makes every call after the next n return NULL
 * (n < 0 disables it), so tests can walk each error path; the counter is
 * process-wide and meant for single-threaded tests.
 */
#ifndef RKV_COMMON_H
#define RKV_COMMON_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rangekv/error.h"
#include "rangekv/log.h"

/* ---- logging ------------------------------------------------------------ */

extern enum rkv_log_level rkv__log_min_level;

void rkv__log(enum rkv_log_level level, const char *subsys, const char *file,
              int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define RKV_LOG(level, ...)                                                    \
    do {                                                                       \
        if ((level) >= rkv__log_min_level) {                                   \
            rkv__log((level), RKV_LOG_SUBSYS, __FILE__, __LINE__,              \
                     __VA_ARGS__);                                             \
        }                                                                      \
    } while (0)

/* Verbose tracing is compiled out unless the build defines RKV_TRACE. */
#ifdef RKV_TRACE
#define RKV_TRACEF(...) RKV_LOG(RKV_DEBUG, __VA_ARGS__)
#else
#define RKV_TRACEF(...)                                                        \
    do {                                                                       \
    } while (0)
#endif

/* ---- allocation --------------------------------------------------------- */

void *rkv_malloc(size_t size);
void *rkv_calloc(size_t count, size_t size);
void *rkv_realloc(void *ptr, size_t size);
void rkv_free(void *ptr);
/* Copies len bytes into a new allocation; NULL when allocation fails. */
void *rkv_memdup(const void *src, size_t len);
void rkv_alloc_fail_after(long n);

/* ---- small helpers ------------------------------------------------------ */

#define RKV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define RKV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RKV_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline void rkv_put_be64(uint8_t *dst, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        dst[i] = (uint8_t)(value & 0xff);
        value >>= 8;
    }
}

static inline uint64_t rkv_get_be64(const uint8_t *src)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) {
        value = (value << 8) | src[i];
    }
    return value;
}

static inline void rkv_put_be32(uint8_t *dst, uint32_t value)
{
    dst[0] = (uint8_t)(value >> 24);
    dst[1] = (uint8_t)(value >> 16);
    dst[2] = (uint8_t)(value >> 8);
    dst[3] = (uint8_t)value;
}

static inline uint32_t rkv_get_be32(const uint8_t *src)
{
    return ((uint32_t)src[0] << 24) | ((uint32_t)src[1] << 16) |
           ((uint32_t)src[2] << 8) | (uint32_t)src[3];
}

/* Returns a monotonic clock reading in milliseconds. */
uint64_t rkv_monotonic_ms(void);

/* ---- command line ------------------------------------------------------- */

/* One `rangekv` subcommand. Each module that adds subcommands exports a
 * table of these, terminated by an entry whose name is NULL; cmd/rangekv.c
 * dispatches on argv[1]. main receives argv starting at the subcommand name
 * and returns the process exit status (0 success, 1 failure, 2 usage). */
struct rkv_cli_command {
    const char *name;    /* "start", "put", "bench" */
    const char *summary; /* one line for `rangekv help` */
    int (*main)(int argc, char **argv);
};

#endif /* RKV_COMMON_H */
