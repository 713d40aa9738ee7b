/* The allocator wrappers, with a fault switch for tests (common/common.h). */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

/* Calls left before allocations start failing; negative means never. */
static long alloc_calls_before_failure = -1;

static bool alloc_should_fail(void)
{
    if (alloc_calls_before_failure < 0) {
        return false;
    }
    if (alloc_calls_before_failure == 0) {
        return true;
    }
    alloc_calls_before_failure--;
    return false;
}

void rkv_alloc_fail_after(long n)
{
    alloc_calls_before_failure = n;
}

void *rkv_malloc(size_t size)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return malloc(size);
}

void *rkv_calloc(size_t count, size_t size)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return calloc(count, size);
}

void *rkv_realloc(void *ptr, size_t size)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return realloc(ptr, size);
}

void rkv_free(void *ptr)
{
    free(ptr);
}

void *rkv_memdup(const void *src, size_t len)
{
    void *copy = rkv_malloc(len > 0 ? len : 1);

    if (copy != NULL && len > 0) {
        memcpy(copy, src, len);
    }
    return copy;
}
