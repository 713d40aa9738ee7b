/*
 * SHA-256 (FIPS 180-4), used only to digest the cluster secret for the peer
 * handshake. The round constants are the first 32 bits of the fractional
 * parts of the cube roots of the first 64 primes (FIPS 180-4, 4.2.2). The
 * initial hash values are the same for the square roots of the first 8
 * primes (5.3.3). Both are computed once rather than typed in, and a unit
 * test checks the standard's example digests.
 */
#include "node/sha256.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static uint32_t sha256_k[64];
static uint32_t sha256_h0[8];
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* First 32 bits of the fractional part of x. */
static uint32_t frac32(long double x)
{
    long double f = x - floorl(x);

    return (uint32_t)(f * 4294967296.0L);
}

static void sha256_init_constants(void)
{
    unsigned n = 0;

    for (unsigned p = 2; n < 64; p++) {
        bool prime = true;

        for (unsigned d = 2; d * d <= p; d++) {
            if (p % d == 0) {
                prime = false;
                break;
            }
        }
        if (!prime) {
            continue;
        }
        if (n < 8) {
            sha256_h0[n] = frac32(sqrtl((long double)p));
        }
        sha256_k[n] = frac32(cbrtl((long double)p));
        n++;
    }
}

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const uint8_t block[64])
{
    uint32_t w[64];
    uint32_t s[8];

    for (unsigned i = 0; i < 16; i++) {
        w[i] = ((uint32_t)block[4 * i] << 24) |
               ((uint32_t)block[4 * i + 1] << 16) |
               ((uint32_t)block[4 * i + 2] << 8) | (uint32_t)block[4 * i + 3];
    }
    for (unsigned i = 16; i < 64; i++) {
        uint32_t s0 =
            rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 =
            rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);

        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, h, sizeof(s));
    for (unsigned i = 0; i < 64; i++) {
        uint32_t e1 = rotr(s[4], 6) ^ rotr(s[4], 11) ^ rotr(s[4], 25);
        uint32_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
        uint32_t t1 = s[7] + e1 + ch + sha256_k[i] + w[i];
        uint32_t e0 = rotr(s[0], 2) ^ rotr(s[0], 13) ^ rotr(s[0], 22);
        uint32_t maj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);
        uint32_t t2 = e0 + maj;

        s[7] = s[6];
        s[6] = s[5];
        s[5] = s[4];
        s[4] = s[3] + t1;
        s[3] = s[2];
        s[2] = s[1];
        s[1] = s[0];
        s[0] = t1 + t2;
    }
    for (unsigned i = 0; i < 8; i++) {
        h[i] += s[i];
    }
}

void rkv_node__sha256(const void *data, size_t len,
                      uint8_t digest[RKV_NODE_SHA256_LEN])
{
    const uint8_t *p = data;
    uint64_t bit_len = (uint64_t)len * 8;
    uint8_t tail[128];
    size_t tail_len;
    uint32_t h[8];

    pthread_once(&sha256_once, sha256_init_constants);
    memcpy(h, sha256_h0, sizeof(h));
    while (len >= 64) {
        sha256_block(h, p);
        p += 64;
        len -= 64;
    }

    /* Padding: 0x80, zeros, then the message length in bits. */
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p, len);
    tail[len] = 0x80;
    tail_len = len + 1 + 8 <= 64 ? 64 : 128;
    for (unsigned i = 0; i < 8; i++) {
        tail[tail_len - 1 - i] = (uint8_t)(bit_len >> (8 * i));
    }
    sha256_block(h, tail);
    if (tail_len == 128) {
        sha256_block(h, tail + 64);
    }
    for (unsigned i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)h[i];
    }
}

bool rkv_node__digest_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    uint8_t diff = 0;

    /* Constant time: every byte is compared whatever the first mismatch. */
    for (size_t i = 0; i < len; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}
