/*
 * Adversarial tests: requests over the size limits, requests that decode
 * but carry no operation, and many idle or half-sent connections, against
 * a real 3-node cluster on 127.0.0.1. Each case checks the error the node
 * returns (code and a message naming the size and the limit), that nothing
 * was stored, and that every node keeps serving afterwards.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/lib/node_rpc.h"
#include "tests/lib/test.h"

/* Time one routed request may take, retries included. */
#define REQUEST_TIMEOUT_MS 20000
/* Node-side limits these tests probe (range/range.h, node/rpc.c); the
 * client library's RKV_CLIENT_KEY_MAX is the same 509 bytes. */
#define NODE_KEY_MAX 509
#define NODE_VALUE_MAX (4u * 1024 * 1024)
#define NODE_BATCH_OPS_MAX 10000
/* Connections held open at once by the idle-connection test. */
#define IDLE_CONNECTIONS 200

struct fixture {
    struct rkv_test_cluster cluster;
    char addrs[RKV_TEST_NODES_MAX][RKV_TEST_ADDR_MAX];
};

static void setup(struct fixture *f)
{
    signal(SIGPIPE, SIG_IGN);
    rkv_test_cluster_setup(&f->cluster, 3, rkv_test_tmpdir(), 65536);
    for (size_t i = 0; i < 3; i++) {
        rkv_test_cluster_start_node(&f->cluster, i);
    }
    rkv_test_cluster_init(&f->cluster, 0);
    for (size_t i = 0; i < 3; i++) {
        snprintf(f->addrs[i], RKV_TEST_ADDR_MAX, "%s",
                 f->cluster.client_addrs[i]);
    }
}

static void teardown(struct fixture *f)
{
    rkv_test_cluster_stop(&f->cluster);
}

/* Routes a put of key_len bytes of 'k' (then the suffix byte) and value_len
 * bytes of 'v'. Returns the response, owned by the caller. */
static Rkv__Rpc__Response *put_sized(struct fixture *f, size_t key_len,
                                     char suffix, size_t value_len)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    uint8_t *key = malloc(key_len + 1);
    uint8_t *value = malloc(value_len + 1);

    ASSERT_TRUE(key != NULL);
    ASSERT_TRUE(value != NULL);
    memset(key, 'k', key_len);
    if (key_len > 0) {
        key[key_len - 1] = (uint8_t)suffix;
    }
    memset(value, 'v', value_len);
    put.key.data = key;
    put.key.len = key_len;
    put.value.data = value;
    put.value.len = value_len;
    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_PUT;
    request.put = &put;
    response = rkv_test_rpc_route(f->addrs, 3, &request, REQUEST_TIMEOUT_MS);
    free(key);
    free(value);
    ASSERT_TRUE(response != NULL);
    return response;
}

/* Returns whether a get of the key put_sized() builds finds a value. */
static bool sized_key_found(struct fixture *f, size_t key_len, char suffix)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__GetRequest get = RKV__RPC__GET_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    uint8_t *key = malloc(key_len);
    bool found;

    ASSERT_TRUE(key != NULL);
    memset(key, 'k', key_len);
    key[key_len - 1] = (uint8_t)suffix;
    get.key.data = key;
    get.key.len = key_len;
    request.id = 2;
    request.op_case = RKV__RPC__REQUEST__OP_GET;
    request.get = &get;
    response = rkv_test_rpc_route(f->addrs, 3, &request, REQUEST_TIMEOUT_MS);
    free(key);
    ASSERT_TRUE(response != NULL);
    ASSERT_INT_EQ(response->error, 0);
    ASSERT_INT_EQ(response->result_case, RKV__RPC__RESPONSE__RESULT_GET);
    found = response->get->found;
    rkv__rpc__response__free_unpacked(response, NULL);
    return found;
}

/* Checks that response is RKV_ETOOLARGE with a message that contains both
 * numbers, then frees it. */
static void assert_too_large(Rkv__Rpc__Response *response, const char *size,
                             const char *limit)
{
    ASSERT_INT_EQ(response->error, RKV_ETOOLARGE);
    ASSERT_TRUE(response->error_message != NULL);
    ASSERT_TRUE(strstr(response->error_message, size) != NULL);
    ASSERT_TRUE(strstr(response->error_message, limit) != NULL);
    rkv__rpc__response__free_unpacked(response, NULL);
}

static void assert_all_nodes_serve(struct fixture *f, const char *key)
{
    char value[64];
    bool found;

    for (size_t i = 0; i < 3; i++) {
        ASSERT_TRUE(rkv_test_cluster_node_alive(&f->cluster, i));
    }
    ASSERT_INT_EQ(rkv_test_put(f->addrs, 3, key, "after", REQUEST_TIMEOUT_MS),
                  0);
    for (size_t i = 0; i < 3; i++) {
        ASSERT_INT_EQ(rkv_test_get(&f->addrs[i], 1, key, &found, value,
                                   sizeof(value), REQUEST_TIMEOUT_MS),
                      0);
        ASSERT_TRUE(found);
        ASSERT_STR_EQ(value, "after");
    }
}

TEST(adversarial, key_sizes_at_the_limit)
{
    struct fixture f;
    char size[32];
    char limit[32];

    setup(&f);
    rkv__rpc__response__free_unpacked(put_sized(&f, NODE_KEY_MAX, 'a', 1),
                                      NULL);
    ASSERT_TRUE(sized_key_found(&f, NODE_KEY_MAX, 'a'));

    snprintf(limit, sizeof(limit), "%d", NODE_KEY_MAX);
    for (size_t len = NODE_KEY_MAX + 1; len <= 600; len += 45) {
        snprintf(size, sizeof(size), "%zu", len);
        assert_too_large(put_sized(&f, len, 'b', 1), size, limit);
    }
    /* An empty key is rejected as invalid, with a message. */
    {
        Rkv__Rpc__Response *response = put_sized(&f, 0, 'c', 1);

        ASSERT_INT_NE(response->error, 0);
        ASSERT_TRUE(response->error_message != NULL);
        rkv__rpc__response__free_unpacked(response, NULL);
    }
    assert_all_nodes_serve(&f, "key-limits");
    teardown(&f);
}

TEST(adversarial, value_over_limit_stores_nothing)
{
    struct fixture f;
    char size[32];
    char limit[32];
    Rkv__Rpc__Response *response;

    setup(&f);
    response = put_sized(&f, 16, 'a', NODE_VALUE_MAX);
    ASSERT_INT_EQ(response->error, 0);
    rkv__rpc__response__free_unpacked(response, NULL);
    ASSERT_TRUE(sized_key_found(&f, 16, 'a'));

    snprintf(size, sizeof(size), "%u", NODE_VALUE_MAX + 1);
    snprintf(limit, sizeof(limit), "%u", NODE_VALUE_MAX);
    assert_too_large(put_sized(&f, 16, 'b', NODE_VALUE_MAX + 1), size, limit);
    ASSERT_FALSE(sized_key_found(&f, 16, 'b'));
    assert_all_nodes_serve(&f, "value-limits");
    teardown(&f);
}

TEST(adversarial, batch_over_limit_stores_nothing)
{
    struct fixture f;
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__BatchRequest batch = RKV__RPC__BATCH_REQUEST__INIT;
    size_t n_ops = NODE_BATCH_OPS_MAX + 1;
    Rkv__Rpc__BatchOp *ops = calloc(n_ops, sizeof(*ops));
    Rkv__Rpc__BatchOp **op_ptrs = calloc(n_ops, sizeof(*op_ptrs));
    char (*keys)[16] = calloc(n_ops, sizeof(*keys));
    char value[64];
    char size[32];
    char limit[32];
    bool found;

    ASSERT_TRUE(ops != NULL);
    ASSERT_TRUE(op_ptrs != NULL);
    ASSERT_TRUE(keys != NULL);
    setup(&f);
    for (size_t i = 0; i < n_ops; i++) {
        rkv__rpc__batch_op__init(&ops[i]);
        snprintf(keys[i], sizeof(keys[i]), "b%06zu", i);
        ops[i].kind = RKV__RPC__BATCH_OP__KIND__PUT;
        ops[i].key.data = (uint8_t *)keys[i];
        ops[i].key.len = strlen(keys[i]);
        ops[i].has_value = true;
        ops[i].value.data = (uint8_t *)"v";
        ops[i].value.len = 1;
        op_ptrs[i] = &ops[i];
    }
    batch.n_ops = n_ops;
    batch.ops = op_ptrs;
    request.id = 3;
    request.op_case = RKV__RPC__REQUEST__OP_BATCH;
    request.batch = &batch;

    snprintf(size, sizeof(size), "%zu", n_ops);
    snprintf(limit, sizeof(limit), "%d", NODE_BATCH_OPS_MAX);
    assert_too_large(
        rkv_test_rpc_route(f.addrs, 3, &request, REQUEST_TIMEOUT_MS), size,
        limit);
    ASSERT_INT_EQ(rkv_test_get(f.addrs, 3, keys[0], &found, value,
                               sizeof(value), REQUEST_TIMEOUT_MS),
                  0);
    ASSERT_FALSE(found);
    ASSERT_INT_EQ(rkv_test_get(f.addrs, 3, keys[n_ops - 1], &found, value,
                               sizeof(value), REQUEST_TIMEOUT_MS),
                  0);
    ASSERT_FALSE(found);
    assert_all_nodes_serve(&f, "batch-limits");
    free(ops);
    free(op_ptrs);
    free(keys);
    teardown(&f);
}

TEST(adversarial, request_without_op_rejected)
{
    /* A request that decodes but sets no operation gets an error reply on
     * the same connection, which then still serves a valid request. */
    struct fixture f;
    Rkv__Rpc__Request empty = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__Request status = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__StatusRequest status_op = RKV__RPC__STATUS_REQUEST__INIT;
    Rkv__Rpc__Response *response;

    setup(&f);
    for (size_t i = 0; i < 3; i++) {
        int fd = rkv_test_rpc_connect(f.addrs[i]);

        ASSERT_TRUE(fd >= 0);
        empty.id = 10 + i;
        response = rkv_test_rpc_call(fd, &empty);
        ASSERT_TRUE(response != NULL);
        ASSERT_UINT_EQ(response->id, 10 + i);
        ASSERT_INT_NE(response->error, 0);
        ASSERT_TRUE(response->error_message != NULL);
        rkv__rpc__response__free_unpacked(response, NULL);

        status.id = 20 + i;
        status.op_case = RKV__RPC__REQUEST__OP_STATUS;
        status.status = &status_op;
        response = rkv_test_rpc_call(fd, &status);
        ASSERT_TRUE(response != NULL);
        ASSERT_INT_EQ(response->error, 0);
        ASSERT_INT_EQ(response->result_case,
                      RKV__RPC__RESPONSE__RESULT_STATUS);
        ASSERT_UINT_EQ(response->status->node_id, i + 1);
        rkv__rpc__response__free_unpacked(response, NULL);
        close(fd);
    }
    assert_all_nodes_serve(&f, "no-op");
    teardown(&f);
}

TEST(adversarial, idle_and_partial_frames_block_nothing)
{
    /* Connections that stay idle or stop inside a frame header or body, on
     * client and peer ports, leave every node serving other clients. */
    static const uint8_t partial_header[] = {0x00, 0x00};
    static const uint8_t partial_body[] = {0x00, 0x00, 0x01, 0x00, 0x08, 0x01};
    struct fixture f;
    int fds[IDLE_CONNECTIONS];

    setup(&f);
    for (size_t c = 0; c < IDLE_CONNECTIONS; c++) {
        size_t node = c % 3;
        const char *addr = (c / 3) % 2 == 0 ? f.cluster.client_addrs[node]
                                            : f.cluster.procs[node].peer_addr;

        fds[c] = rkv_test_rpc_connect(addr);
        ASSERT_TRUE(fds[c] >= 0);
        if (c % 5 == 1) {
            ASSERT_INT_EQ(send(fds[c], partial_header, sizeof(partial_header),
                               MSG_NOSIGNAL),
                          (long long)sizeof(partial_header));
        } else if (c % 5 == 2) {
            ASSERT_INT_EQ(send(fds[c], partial_body, sizeof(partial_body),
                               MSG_NOSIGNAL),
                          (long long)sizeof(partial_body));
        }
    }
    assert_all_nodes_serve(&f, "idle-held");
    for (size_t c = 0; c < IDLE_CONNECTIONS; c++) {
        close(fds[c]);
    }
    assert_all_nodes_serve(&f, "idle-closed");
    teardown(&f);
}
