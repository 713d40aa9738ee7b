/*
 * The key-value access that the SQL layer needs, behind a small vtable.
 *
 * Two implementations exist: sql_kv_client.c runs every call through the
 * rangekv client library (include/rangekv/client.h) and is what the server
 * and the shell use; tests/unit/sql/kv_local.c keeps a sorted array in
 * memory with split points, and only the unit tests of the virtual-table
 * logic use it.
 *
 * Invariants:
 *   1. Keys compare as unsigned bytes (memcmp, shorter prefix first), the
 *      order the cluster stores them in.
 *   2. batch() is atomic only when every key lies in one range; callers
 *      group operations by range with ranges() first. A batch whose keys
 *      straddle a range boundary fails with RKV_EKEYMISMATCH and changes
 *      nothing.
 *   3. ranges() lists ranges in key order and covers the whole keyspace.
 *
 * Threads: an rkv_sql_kv is used by one thread at a time; the client-backed
 * one may be shared by sessions on different threads because the client
 * library is thread-safe.
 */
#ifndef RKV_SQL_KV_H
#define RKV_SQL_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One key-value pair returned by scan(); both buffers are owned by the
 * array and freed by rkv_sql_kv_pairs_free(). */
struct rkv_sql_kv_pair {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
};

/* One write in a batch; the buffers are borrowed for the call. */
struct rkv_sql_kv_op {
    bool is_delete; /* false: put */
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value; /* put only */
    size_t value_len;
};

/* One range as the store reports it; the key buffers are owned by the
 * array and freed by rkv_sql_kv_ranges_free(). */
struct rkv_sql_kv_range {
    uint64_t range_id;
    uint8_t *start_key; /* inclusive */
    size_t start_key_len;
    uint8_t *end_key; /* exclusive; length 0 means the keyspace end */
    size_t end_key_len;
    uint64_t leader_node_id;      /* 0 when unknown */
    uint64_t replica_node_ids[8]; /* voters and learners */
    size_t n_replicas;            /* entries used in replica_node_ids */
    uint64_t live_bytes;          /* key plus value bytes */
    uint64_t key_count;           /* live keys */
};

struct rkv_sql_kv;

/* The operations an implementation provides. Every call returns 0 or a
 * negative code (RKV_E* or -errno); message, when not NULL, receives a
 * NUL-terminated detail of at most RKV_SQL_KV_MESSAGE_MAX bytes. */
struct rkv_sql_kv_vtable {
    /* Reads one key. Returns RKV_ENOTFOUND when it is absent. *value_out
     * is a new buffer freed with rkv_free(). */
    int (*get)(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
               uint8_t **value_out, size_t *value_len_out, char *message);
    /* Returns up to limit pairs of [start, end) in key order; an empty end
     * means the keyspace end. Fewer than limit pairs means the span is
     * exhausted. */
    int (*scan)(struct rkv_sql_kv *kv, const uint8_t *start, size_t start_len,
                const uint8_t *end, size_t end_len, uint32_t limit,
                struct rkv_sql_kv_pair **pairs_out, size_t *n_pairs_out,
                char *message);
    /* Applies every op atomically; see invariant 2. */
    int (*batch)(struct rkv_sql_kv *kv, const struct rkv_sql_kv_op *ops,
                 size_t n_ops, char *message);
    /* Swaps the value of key when it equals expected (NULL: the key must
     * be absent); a NULL value deletes the key. Sets *swapped. */
    int (*cas)(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
               const uint8_t *expected, size_t expected_len,
               const uint8_t *value, size_t value_len, bool *swapped,
               char *message);
    /* Lists every range; see invariant 3. */
    int (*ranges)(struct rkv_sql_kv *kv, struct rkv_sql_kv_range **ranges_out,
                  size_t *n_ranges_out, char *message);
    /* Frees the implementation. */
    void (*close)(struct rkv_sql_kv *kv);
};

#define RKV_SQL_KV_MESSAGE_MAX 256

/* The handle; implementations embed it as their first member. */
struct rkv_sql_kv {
    const struct rkv_sql_kv_vtable *vtable;
};

/* Puts or deletes one key through batch(). */
int rkv_sql_kv_put(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len, char *message);
int rkv_sql_kv_delete(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                      char *message);

void rkv_sql_kv_pairs_free(struct rkv_sql_kv_pair *pairs, size_t n_pairs);
void rkv_sql_kv_ranges_free(struct rkv_sql_kv_range *ranges, size_t n_ranges);

/* Opens the implementation over the rangekv client library, connected to
 * hosts ("host:port" client addresses, borrowed for the call). *out is
 * closed with its vtable's close(). Returns -EINVAL for no hosts, or the
 * client library's error. */
int rkv_sql_kv_client_open(const char *const *hosts, size_t n_hosts,
                           struct rkv_sql_kv **out);

#endif /* RKV_SQL_KV_H */
