/*
 * SHA-256 for the peer handshake's secret digest, and a constant-time
 * comparison of digests.
 */
#ifndef RKV_NODE_SHA256_H
#define RKV_NODE_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RKV_NODE_SHA256_LEN 32

/* Computes the SHA-256 digest of data[0..len). Thread-safe. */
void rkv_node__sha256(const void *data, size_t len,
                      uint8_t digest[RKV_NODE_SHA256_LEN]);

/* Returns whether a and b (len bytes each) are equal, in time that does not
 * depend on where they differ. */
bool rkv_node__digest_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif /* RKV_NODE_SHA256_H */
