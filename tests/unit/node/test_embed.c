/*
 * The embedding API (include/rangekv/rangekv.h): whole clusters started
 * inside the test process, each node on its own threads, with real LMDB
 * stores in the test's folder and real TCP on 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "node/peer.pb-c.h"
#include "rangekv/rangekv.h"
#include "tests/lib/node_rpc.h"
#include "tests/lib/test.h"

#define NODES_MAX 3
/* Time one routed request may take, retries included. */
#define REQUEST_TIMEOUT_MS 20000
/* Requests sent on one connection before reading the responses. */
#define PIPELINE_DEPTH 64

struct fixture {
    struct rkv_node *nodes[NODES_MAX];
    size_t n_nodes;
    char stores[NODES_MAX][512];
    char peer_addrs[NODES_MAX][RKV_NODE_ADDR_MAX];
    const char *join[NODES_MAX];
    char client_addrs[NODES_MAX][RKV_TEST_ADDR_MAX];
    const char *secrets[NODES_MAX];                /* per node; NULL: none */
    uint64_t split_bytes;                          /* 0: 512 MiB */
    char advertise_client_addr[RKV_TEST_ADDR_MAX]; /* "": the bound one */
};

static void start_node(struct fixture *f, size_t i)
{
    struct rkv_node_config config = {0};
    char peer[RKV_NODE_ADDR_MAX];
    char client[RKV_NODE_ADDR_MAX];
    char errmsg[256];

    config.store_dir = f->stores[i];
    config.listen_addr = f->peer_addrs[i];
    config.join = f->join;
    config.n_join = f->n_nodes;
    config.node_id = i + 1;
    config.tick_ms = 20;
    config.cluster_secret = f->secrets[i];
    config.split_bytes =
        f->split_bytes != 0 ? f->split_bytes : 512ull * 1024 * 1024;
    if (f->advertise_client_addr[0] != '\0') {
        config.advertise_client_addr = f->advertise_client_addr;
    }
    if (rkv_node_start(&config, &f->nodes[i], errmsg, sizeof(errmsg)) != 0) {
        rkv_test_fail(__FILE__, __LINE__, "starting node %zu failed: %s", i + 1,
                      errmsg);
    }
    rkv_node_addresses(f->nodes[i], peer, client);
    ASSERT_STR_EQ(peer, f->peer_addrs[i]);
    if (f->advertise_client_addr[0] != '\0') {
        ASSERT_STR_EQ(client, f->advertise_client_addr);
        return;
    }
    snprintf(f->client_addrs[i], RKV_TEST_ADDR_MAX, "%s", client);
    ASSERT_UINT_EQ(rkv_node_id(f->nodes[i]), i + 1);
}

static void setup(struct fixture *f, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->n_nodes = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(f->stores[i], sizeof(f->stores[i]), "%s/node%zu",
                 rkv_test_tmpdir(), i + 1);
        snprintf(f->peer_addrs[i], sizeof(f->peer_addrs[i]), "127.0.0.1:%u",
                 (unsigned)rkv_test_pick_port());
        f->join[i] = f->peer_addrs[i];
    }
}

static void start_all(struct fixture *f)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        start_node(f, i);
    }
}

static void teardown(struct fixture *f)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        if (f->nodes[i] != NULL) {
            rkv_node_stop(f->nodes[i]);
            f->nodes[i] = NULL;
        }
    }
}

static Rkv__Rpc__StatusResponse *status_of(struct fixture *f, size_t i,
                                           Rkv__Rpc__Response **response)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__StatusRequest status = RKV__RPC__STATUS_REQUEST__INIT;

    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_STATUS;
    request.status = &status;
    *response = rkv_test_rpc_call_addr(f->client_addrs[i], &request);
    ASSERT_TRUE(*response != NULL);
    ASSERT_INT_EQ((*response)->error, 0);
    ASSERT_INT_EQ((*response)->result_case, RKV__RPC__RESPONSE__RESULT_STATUS);
    return (*response)->status;
}

/* Returns the node that leads the (single) first range. */
static size_t find_leader(struct fixture *f)
{
    for (int attempt = 0; attempt < 500; attempt++) {
        for (size_t i = 0; i < f->n_nodes; i++) {
            Rkv__Rpc__Response *response;
            Rkv__Rpc__StatusResponse *status = status_of(f, i, &response);
            bool leads = status->n_leaders > 0;

            rkv__rpc__response__free_unpacked(response, NULL);
            if (leads) {
                return i;
            }
        }
        usleep(20 * 1000);
    }
    rkv_test_fail(__FILE__, __LINE__, "no leader was elected");
}

TEST(embed, three_nodes_in_process)
{
    /* Three nodes in one process form a cluster through rkv_node_init(),
     * serve writes and reads through every node, and refuse a second
     * init. */
    struct fixture f;

    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[1]));
    ASSERT_INT_EQ(rkv_node_init(f.nodes[1]), RKV_ESTALE);
    for (size_t i = 0; i < 3; i++) {
        char one[1][RKV_TEST_ADDR_MAX];
        char key[32];
        char value[32];
        bool found;

        snprintf(one[0], RKV_TEST_ADDR_MAX, "%s", f.client_addrs[i]);
        snprintf(key, sizeof(key), "embedded-%zu", i);
        ASSERT_OK(rkv_test_put(one, 1, key, "v", REQUEST_TIMEOUT_MS));
        ASSERT_OK(rkv_test_get(one, 1, key, &found, value, sizeof(value),
                               REQUEST_TIMEOUT_MS));
        ASSERT_TRUE(found);
        ASSERT_STR_EQ(value, "v");
    }
    teardown(&f);
}

TEST(embed, restart_keeps_writes)
{
    /* Stopping every node and starting them again from their folders keeps
     * every acknowledged write, the node ids and the cluster id. */
    struct fixture f;
    Rkv__Rpc__Response *response;
    uint64_t cluster_id;
    bool found;
    char value[64];

    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    for (int i = 0; i < 50; i++) {
        char key[32];

        snprintf(key, sizeof(key), "r%03d", i);
        ASSERT_OK(
            rkv_test_put(f.client_addrs, 3, key, key, REQUEST_TIMEOUT_MS));
    }
    cluster_id = status_of(&f, 2, &response)->cluster_id;
    ASSERT_UINT_NE(cluster_id, 0);
    rkv__rpc__response__free_unpacked(response, NULL);
    teardown(&f);

    start_all(&f);
    ASSERT_UINT_EQ(status_of(&f, 2, &response)->cluster_id, cluster_id);
    rkv__rpc__response__free_unpacked(response, NULL);
    for (int i = 0; i < 50; i++) {
        char key[32];

        snprintf(key, sizeof(key), "r%03d", i);
        ASSERT_OK(rkv_test_get(f.client_addrs, 3, key, &found, value,
                               sizeof(value), REQUEST_TIMEOUT_MS));
        ASSERT_TRUE(found);
        ASSERT_STR_EQ(value, key);
    }
    teardown(&f);
}

TEST(embed, group_commit_counters)
{
    /* 64 puts pipelined on one connection to the leader are committed with
     * far fewer fsyncs than puts, and status counts proposals, puts,
     * commits and fsyncs. */
    struct fixture f;
    Rkv__Rpc__Response *response;
    Rkv__Rpc__StatusResponse *status;
    size_t leader;
    int fd;

    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "warm", "up", REQUEST_TIMEOUT_MS));
    leader = find_leader(&f);
    fd = rkv_test_rpc_connect(f.client_addrs[leader]);
    ASSERT_TRUE(fd >= 0);
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < PIPELINE_DEPTH; i++) {
            Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
            Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
            char key[32];

            snprintf(key, sizeof(key), "p%02d-%03d", round, i);
            put.key.data = (uint8_t *)key;
            put.key.len = strlen(key);
            put.value.data = (uint8_t *)key;
            put.value.len = strlen(key);
            request.id = (uint64_t)(round * PIPELINE_DEPTH + i + 1);
            request.op_case = RKV__RPC__REQUEST__OP_PUT;
            request.put = &put;
            ASSERT_OK(rkv_test_rpc_send(fd, &request));
        }
        for (int i = 0; i < PIPELINE_DEPTH; i++) {
            response = rkv_test_rpc_recv(fd);
            ASSERT_TRUE(response != NULL);
            ASSERT_INT_EQ(response->error, 0);
            rkv__rpc__response__free_unpacked(response, NULL);
        }
    }
    close(fd);

    status = status_of(&f, leader, &response);
    ASSERT_UINT_GE(status->n_puts, 10 * PIPELINE_DEPTH);
    ASSERT_UINT_GE(status->n_proposals, 10 * PIPELINE_DEPTH);
    ASSERT_UINT_GT(status->n_commits, 0);
    ASSERT_UINT_GT(status->n_fsyncs, 0);
    /* One fsync per put would be 640; group commit needs only a few per
     * round of 64. */
    ASSERT_UINT_LT(status->n_fsyncs, status->n_puts / 4);
    ASSERT_UINT_EQ(status->n_nodes, 3);
    rkv__rpc__response__free_unpacked(response, NULL);
    teardown(&f);
}

/* Returns the LMDB commits node i has made since it started. */
static uint64_t commits_of(struct fixture *f, size_t i)
{
    Rkv__Rpc__Response *response;
    uint64_t n_commits = status_of(f, i, &response)->n_commits;

    rkv__rpc__response__free_unpacked(response, NULL);
    return n_commits;
}

TEST(embed, reads_skip_follower_commits)
{
    /* Linearizable reads confirm leadership with a heartbeat round each.
     * A follower's heartbeat response has nothing to persist, so a
     * read-only workload makes no LMDB commit on the followers. */
    struct fixture f;
    char leader_addr[1][RKV_TEST_ADDR_MAX];
    uint64_t before[NODES_MAX];
    size_t leader;

    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "read", "me", REQUEST_TIMEOUT_MS));
    leader = find_leader(&f);
    snprintf(leader_addr[0], RKV_TEST_ADDR_MAX, "%s", f.client_addrs[leader]);
    /* Let the followers learn and apply the commit of the put. */
    usleep(500 * 1000);
    for (size_t i = 0; i < 3; i++) {
        before[i] = commits_of(&f, i);
    }

    for (int i = 0; i < 300; i++) {
        char value[16];
        bool found = false;

        ASSERT_OK(rkv_test_get(leader_addr, 1, "read", &found, value,
                               sizeof(value), REQUEST_TIMEOUT_MS));
        ASSERT_TRUE(found);
        ASSERT_STR_EQ(value, "me");
    }
    ASSERT_UINT_EQ(find_leader(&f), leader);
    for (size_t i = 0; i < 3; i++) {
        if (i != leader) {
            ASSERT_UINT_EQ(commits_of(&f, i), before[i]);
        }
    }
    teardown(&f);
}

TEST(embed, wrong_secret_is_rejected)
{
    /* A node whose cluster secret differs is rejected at the handshake: the
     * two nodes that share the secret elect a leader and serve writes, and
     * the third never learns the cluster id. */
    struct fixture f;
    Rkv__Rpc__Response *response;

    setup(&f, 3);
    f.secrets[0] = "correct horse";
    f.secrets[1] = "correct horse";
    f.secrets[2] = "battery staple";
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 2, "secret", "kept", REQUEST_TIMEOUT_MS));
    usleep(300 * 1000);
    ASSERT_UINT_EQ(status_of(&f, 2, &response)->cluster_id, 0);
    rkv__rpc__response__free_unpacked(response, NULL);
    teardown(&f);
}

/* Writes keys q000..q(n-1) through any node. */
static void put_many(struct fixture *f, int n, const char *value)
{
    for (int i = 0; i < n; i++) {
        char key[32];

        snprintf(key, sizeof(key), "q%04d", i);
        ASSERT_OK(rkv_test_put(f->client_addrs, f->n_nodes, key, value,
                               REQUEST_TIMEOUT_MS));
    }
}

TEST(embed, idle_ranges_quiesce)
{
    /* Once writes stop, every range of a split keyspace quiesces on every
     * node; a write wakes its range, and when the node leading some of the
     * quiesced ranges stops, the others elect new leaders and serve every
     * range again. */
    static const char value[] = "a value long enough to split ranges often";
    struct fixture f;
    Rkv__Rpc__Response *response;
    Rkv__Rpc__StatusResponse *status;
    bool all_quiesced = false;
    uint64_t n_ranges = 0;
    size_t leader;

    setup(&f, 3);
    f.split_bytes = 2048;
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    put_many(&f, 400, value);

    for (int attempt = 0; attempt < 300 && !all_quiesced; attempt++) {
        usleep(20 * 1000);
        all_quiesced = true;
        for (size_t i = 0; i < 3; i++) {
            status = status_of(&f, i, &response);
            n_ranges = status->n_ranges;
            all_quiesced = all_quiesced && status->n_ranges >= 10 &&
                           status->n_quiesced == status->n_ranges;
            rkv__rpc__response__free_unpacked(response, NULL);
        }
    }
    ASSERT_UINT_GE(n_ranges, 10);
    ASSERT_TRUE(all_quiesced);

    /* A write wakes its range. */
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "q0000", "woken", REQUEST_TIMEOUT_MS));
    status = status_of(&f, find_leader(&f), &response);
    ASSERT_UINT_LT(status->n_quiesced, status->n_ranges);
    rkv__rpc__response__free_unpacked(response, NULL);

    /* Stop a node that leads quiesced ranges: the survivors take over. */
    leader = find_leader(&f);
    rkv_node_stop(f.nodes[leader]);
    f.nodes[leader] = NULL;
    {
        char addrs[2][RKV_TEST_ADDR_MAX];
        size_t n = 0;

        for (size_t i = 0; i < 3; i++) {
            if (i != leader) {
                snprintf(addrs[n++], RKV_TEST_ADDR_MAX, "%s",
                         f.client_addrs[i]);
            }
        }
        for (int i = 0; i < 400; i += 7) {
            char key[32];
            char got[64];
            bool found;

            snprintf(key, sizeof(key), "q%04d", i);
            ASSERT_OK(rkv_test_put(addrs, 2, key, "after", REQUEST_TIMEOUT_MS));
            ASSERT_OK(rkv_test_get(addrs, 2, key, &found, got, sizeof(got),
                                   REQUEST_TIMEOUT_MS));
            ASSERT_TRUE(found);
            ASSERT_STR_EQ(got, "after");
        }
    }
    teardown(&f);
}

/* Sends request to node i and returns the response (never NULL). */
static Rkv__Rpc__Response *call(struct fixture *f, size_t i,
                                Rkv__Rpc__Request *request)
{
    Rkv__Rpc__Response *response =
        rkv_test_rpc_call_addr(f->client_addrs[i], request);

    ASSERT_TRUE(response != NULL);
    return response;
}

static Rkv__Rpc__Response *call_put(struct fixture *f, size_t i,
                                    const char *key, size_t key_len,
                                    const char *value, size_t value_len)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;

    put.key.data = (uint8_t *)key;
    put.key.len = key_len;
    put.value.data = (uint8_t *)value;
    put.value.len = value_len;
    request.id = 21;
    request.op_case = RKV__RPC__REQUEST__OP_PUT;
    request.put = &put;
    return call(f, i, &request);
}

/* Returns how many ranges node i lists without a known leader; *n_ranges
 * gets how many it lists. */
static size_t leaderless_ranges(struct fixture *f, size_t i, size_t *n_ranges)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__RangesRequest ranges = RKV__RPC__RANGES_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    size_t n_leaderless = 0;

    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_RANGES;
    request.ranges = &ranges;
    response = rkv_test_rpc_call_addr(f->client_addrs[i], &request);
    ASSERT_TRUE(response != NULL);
    ASSERT_INT_EQ(response->error, 0);
    ASSERT_INT_EQ(response->result_case, RKV__RPC__RESPONSE__RESULT_RANGES);
    *n_ranges = response->ranges->n_ranges;
    for (size_t j = 0; j < response->ranges->n_ranges; j++) {
        n_leaderless += response->ranges->ranges[j]->leader_node_id == 0;
    }
    rkv__rpc__response__free_unpacked(response, NULL);
    return n_leaderless;
}

TEST(embed, restart_learns_quiesced_leaders)
{
    /* A node restarted while the ranges it follows are quiesced learns
     * their leaders: the leaders wake when they reconnect to it. Before,
     * it listed no leader for them until a write woke each range. */
    static const char value[] = "a value long enough to split ranges often";
    struct fixture f;
    Rkv__Rpc__Response *response;
    Rkv__Rpc__StatusResponse *status;
    bool all_quiesced = false;
    size_t n_leaderless = 0;
    size_t n_ranges = 0;
    size_t restarted;

    setup(&f, 3);
    f.split_bytes = 2048;
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    put_many(&f, 200, value);
    for (int attempt = 0; attempt < 300 && !all_quiesced; attempt++) {
        usleep(20 * 1000);
        all_quiesced = true;
        for (size_t i = 0; i < 3; i++) {
            status = status_of(&f, i, &response);
            all_quiesced = all_quiesced && status->n_ranges >= 5 &&
                           status->n_quiesced == status->n_ranges;
            rkv__rpc__response__free_unpacked(response, NULL);
        }
    }
    ASSERT_TRUE(all_quiesced);

    restarted = (find_leader(&f) + 1) % 3;
    rkv_node_stop(f.nodes[restarted]);
    f.nodes[restarted] = NULL;
    start_node(&f, restarted);
    /* Without the wake-up the leaders are never learned, so a generous
     * 20 s only absorbs slow (sanitizer) runs. */
    for (int attempt = 0; attempt < 1000; attempt++) {
        n_leaderless = leaderless_ranges(&f, restarted, &n_ranges);
        if (n_ranges >= 5 && n_leaderless == 0) {
            break;
        }
        usleep(20 * 1000);
    }
    ASSERT_UINT_GE(n_ranges, 5);
    ASSERT_UINT_EQ(n_leaderless, 0);
    teardown(&f);
}

TEST(embed, rpc_operations)
{
    /* Delete, compare-and-swap, scan with a limit, an atomic batch and a
     * split through the client protocol on the leader, and the typed
     * errors: not leader with the leader's address, key outside the named
     * range with its fresh descriptor, and a key over the size limit. */
    struct fixture f;
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__Response *response;
    size_t leader;
    size_t follower;
    char big_key[600];

    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    ASSERT_OK(rkv_test_put(f.client_addrs, 3, "a", "1", REQUEST_TIMEOUT_MS));
    leader = find_leader(&f);
    follower = (leader + 1) % 3;
    for (char c = 'b'; c <= 'f'; c++) {
        char key[2] = {c, '\0'};

        response = call_put(&f, leader, key, 1, key, 1);
        ASSERT_INT_EQ(response->error, 0);
        rkv__rpc__response__free_unpacked(response, NULL);
    }

    /* Not leader: the follower names the leader's client address. */
    response = call_put(&f, follower, "x", 1, "y", 1);
    ASSERT_INT_EQ(response->error, RKV_ENOTLEADER);
    ASSERT_UINT_EQ(response->leader_node_id, leader + 1);
    ASSERT_STR_EQ(response->leader_client_addr, f.client_addrs[leader]);
    rkv__rpc__response__free_unpacked(response, NULL);

    /* Too large: a key over RKV_RANGE_KEY_MAX. */
    memset(big_key, 'k', sizeof(big_key));
    response = call_put(&f, leader, big_key, sizeof(big_key), "v", 1);
    ASSERT_INT_EQ(response->error, RKV_ETOOLARGE);
    ASSERT_TRUE(response->error_message != NULL);
    rkv__rpc__response__free_unpacked(response, NULL);

    /* Delete reports whether the key existed. */
    {
        Rkv__Rpc__DeleteRequest del = RKV__RPC__DELETE_REQUEST__INIT;

        del.key.data = (uint8_t *)"b";
        del.key.len = 1;
        request.op_case = RKV__RPC__REQUEST__OP_DELETE;
        request.delete_ = &del;
        for (int round = 0; round < 2; round++) {
            response = call(&f, leader, &request);
            ASSERT_INT_EQ(response->error, 0);
            ASSERT_INT_EQ(response->result_case,
                          RKV__RPC__RESPONSE__RESULT_DELETE);
            ASSERT_INT_EQ(response->delete_->existed, round == 0);
            rkv__rpc__response__free_unpacked(response, NULL);
        }
    }

    /* Compare-and-swap: a mismatch returns the current value, a match
     * swaps. */
    {
        Rkv__Rpc__CasRequest cas = RKV__RPC__CAS_REQUEST__INIT;

        cas.key.data = (uint8_t *)"c";
        cas.key.len = 1;
        cas.has_expected_value = true;
        cas.expected_value.data = (uint8_t *)"wrong";
        cas.expected_value.len = 5;
        cas.has_new_value = true;
        cas.new_value.data = (uint8_t *)"C";
        cas.new_value.len = 1;
        request.op_case = RKV__RPC__REQUEST__OP_CAS;
        request.cas = &cas;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, 0);
        ASSERT_FALSE(response->cas->swapped);
        ASSERT_TRUE(response->cas->has_current_value);
        ASSERT_MEM_EQ(response->cas->current_value.data,
                      response->cas->current_value.len, "c", 1);
        rkv__rpc__response__free_unpacked(response, NULL);

        cas.expected_value.data = (uint8_t *)"c";
        cas.expected_value.len = 1;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, 0);
        ASSERT_TRUE(response->cas->swapped);
        rkv__rpc__response__free_unpacked(response, NULL);
    }

    /* Batch: a put and a delete applied together. */
    {
        Rkv__Rpc__BatchRequest batch = RKV__RPC__BATCH_REQUEST__INIT;
        Rkv__Rpc__BatchOp ops[2];
        Rkv__Rpc__BatchOp *op_ptrs[2] = {&ops[0], &ops[1]};

        rkv__rpc__batch_op__init(&ops[0]);
        ops[0].kind = RKV__RPC__BATCH_OP__KIND__PUT;
        ops[0].key.data = (uint8_t *)"g";
        ops[0].key.len = 1;
        ops[0].has_value = true;
        ops[0].value.data = (uint8_t *)"G";
        ops[0].value.len = 1;
        rkv__rpc__batch_op__init(&ops[1]);
        ops[1].kind = RKV__RPC__BATCH_OP__KIND__DELETE;
        ops[1].key.data = (uint8_t *)"d";
        ops[1].key.len = 1;
        batch.n_ops = 2;
        batch.ops = op_ptrs;
        request.op_case = RKV__RPC__REQUEST__OP_BATCH;
        request.batch = &batch;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, 0);
        rkv__rpc__response__free_unpacked(response, NULL);
    }

    /* Batch ops with an undefined kind or a put without a value are
     * rejected, naming the op, and store nothing. */
    {
        Rkv__Rpc__BatchRequest batch = RKV__RPC__BATCH_REQUEST__INIT;
        Rkv__Rpc__GetRequest get = RKV__RPC__GET_REQUEST__INIT;
        Rkv__Rpc__BatchOp op;
        Rkv__Rpc__BatchOp *op_ptrs[1] = {&op};

        rkv__rpc__batch_op__init(&op);
        op.kind = (Rkv__Rpc__BatchOp__Kind)77;
        op.key.data = (uint8_t *)"h";
        op.key.len = 1;
        op.has_value = true;
        op.value.data = (uint8_t *)"H";
        op.value.len = 1;
        batch.n_ops = 1;
        batch.ops = op_ptrs;
        request.op_case = RKV__RPC__REQUEST__OP_BATCH;
        request.batch = &batch;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, -EINVAL);
        ASSERT_TRUE(strstr(response->error_message, "unknown kind 77") != NULL);
        rkv__rpc__response__free_unpacked(response, NULL);

        op.kind = RKV__RPC__BATCH_OP__KIND__PUT;
        op.has_value = false;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, -EINVAL);
        ASSERT_TRUE(strstr(response->error_message, "without a value") != NULL);
        rkv__rpc__response__free_unpacked(response, NULL);

        get.key.data = (uint8_t *)"h";
        get.key.len = 1;
        request.op_case = RKV__RPC__REQUEST__OP_GET;
        request.get = &get;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, 0);
        ASSERT_FALSE(response->get->found);
        rkv__rpc__response__free_unpacked(response, NULL);
    }

    /* Scan with a limit: a, c, e, f, g remain; the first three come back
     * with more_after set and a resume key. */
    {
        Rkv__Rpc__ScanRequest scan = RKV__RPC__SCAN_REQUEST__INIT;

        scan.limit = 3;
        request.op_case = RKV__RPC__REQUEST__OP_SCAN;
        request.scan = &scan;
        response = call(&f, leader, &request);
        ASSERT_INT_EQ(response->error, 0);
        ASSERT_UINT_EQ(response->scan->n_pairs, 3);
        ASSERT_MEM_EQ(response->scan->pairs[0]->key.data,
                      response->scan->pairs[0]->key.len, "a", 1);
        ASSERT_MEM_EQ(response->scan->pairs[1]->key.data,
                      response->scan->pairs[1]->key.len, "c", 1);
        ASSERT_MEM_EQ(response->scan->pairs[1]->value.data,
                      response->scan->pairs[1]->value.len, "C", 1);
        ASSERT_MEM_EQ(response->scan->pairs[2]->key.data,
                      response->scan->pairs[2]->key.len, "e", 1);
        ASSERT_TRUE(response->scan->more_after);
        ASSERT_TRUE(response->scan->has_resume_key);
        rkv__rpc__response__free_unpacked(response, NULL);
    }

    /* Split at "e": the response names both sides; then a put of "a"
     * addressed to the right-hand range gets RKV_EKEYMISMATCH with that
     * range's fresh descriptor. */
    {
        Rkv__Rpc__SplitRequest split = RKV__RPC__SPLIT_REQUEST__INIT;
        Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
        uint64_t right_id;

        split.split_key.data = (uint8_t *)"e";
        split.split_key.len = 1;
        request.op_case = RKV__RPC__REQUEST__OP_SPLIT;
        request.split = &split;
        response =
            rkv_test_rpc_route(f.client_addrs, 3, &request, REQUEST_TIMEOUT_MS);
        ASSERT_TRUE(response != NULL);
        ASSERT_INT_EQ(response->error, 0);
        ASSERT_INT_EQ(response->result_case, RKV__RPC__RESPONSE__RESULT_SPLIT);
        ASSERT_MEM_EQ(response->split->left->end_key.data,
                      response->split->left->end_key.len, "e", 1);
        ASSERT_MEM_EQ(response->split->right->start_key.data,
                      response->split->right->start_key.len, "e", 1);
        right_id = response->split->right->range_id;
        ASSERT_UINT_NE(right_id, response->split->left->range_id);
        rkv__rpc__response__free_unpacked(response, NULL);

        put.key.data = (uint8_t *)"a";
        put.key.len = 1;
        put.value.data = (uint8_t *)"1";
        put.value.len = 1;
        request.op_case = RKV__RPC__REQUEST__OP_PUT;
        request.put = &put;
        request.has_range_id = true;
        request.range_id = right_id;
        /* Every replica checks the span before leadership; a node that
         * has not applied the split yet answers RKV_ERANGENOTFOUND. */
        response = NULL;
        for (int attempt = 0; attempt < 300 && response == NULL; attempt++) {
            response = call(&f, (size_t)attempt % 3, &request);
            if (response->error == RKV_ERANGENOTFOUND) {
                rkv__rpc__response__free_unpacked(response, NULL);
                response = NULL;
                usleep(10 * 1000);
            }
        }
        ASSERT_TRUE(response != NULL);
        ASSERT_INT_EQ(response->error, RKV_EKEYMISMATCH);
        ASSERT_UINT_EQ(response->n_descriptors, 1);
        ASSERT_UINT_EQ(response->descriptors[0]->range_id, right_id);
        ASSERT_MEM_EQ(response->descriptors[0]->start_key.data,
                      response->descriptors[0]->start_key.len, "e", 1);
        rkv__rpc__response__free_unpacked(response, NULL);
        request.has_range_id = false;
        request.range_id = 0;
    }

    /* Every key reads back through the routed helper after the split. */
    {
        static const char *const expected[][2] = {
            {"a", "1"}, {"c", "C"}, {"e", "e"}, {"f", "f"}, {"g", "G"}};

        for (size_t i = 0; i < RKV_ARRAY_SIZE(expected); i++) {
            char got[16];
            bool found;

            ASSERT_OK(rkv_test_get(f.client_addrs, 3, expected[i][0], &found,
                                   got, sizeof(got), REQUEST_TIMEOUT_MS));
            ASSERT_TRUE(found);
            ASSERT_STR_EQ(got, expected[i][1]);
        }
    }
    teardown(&f);
}

TEST(embed, other_cluster_rejected)
{
    /* A node of another cluster (a second cluster whose join list names a
     * member of the first) is rejected at the handshake: the first
     * cluster keeps its id and serves, and the second cannot form a
     * quorum. */
    struct fixture f;
    struct fixture other;
    Rkv__Rpc__Response *response;
    uint64_t cluster_id;
    int rv;

    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    ASSERT_OK(rkv_test_put(f.client_addrs, 3, "mine", "1", REQUEST_TIMEOUT_MS));
    cluster_id = status_of(&f, 1, &response)->cluster_id;
    rkv__rpc__response__free_unpacked(response, NULL);

    /* The other cluster: its own node 1, and node 2 of the first cluster
     * as its second member. */
    memset(&other, 0, sizeof(other));
    other.n_nodes = 2;
    snprintf(other.stores[0], sizeof(other.stores[0]), "%s/other1",
             rkv_test_tmpdir());
    snprintf(other.peer_addrs[0], sizeof(other.peer_addrs[0]), "127.0.0.1:%u",
             (unsigned)rkv_test_pick_port());
    snprintf(other.peer_addrs[1], sizeof(other.peer_addrs[1]), "%s",
             f.peer_addrs[1]);
    other.join[0] = other.peer_addrs[0];
    other.join[1] = other.peer_addrs[1];
    start_node(&other, 0);
    ASSERT_OK(rkv_node_init(other.nodes[0]));

    {
        char one[1][RKV_TEST_ADDR_MAX];

        snprintf(one[0], RKV_TEST_ADDR_MAX, "%s", other.client_addrs[0]);
        rv = rkv_test_put(one, 1, "theirs", "2", 1500);
        ASSERT_INT_NE(rv, 0);
    }
    ASSERT_UINT_EQ(status_of(&f, 1, &response)->cluster_id, cluster_id);
    rkv__rpc__response__free_unpacked(response, NULL);
    ASSERT_OK(rkv_test_put(f.client_addrs, 3, "mine", "2", REQUEST_TIMEOUT_MS));
    rkv_node_stop(other.nodes[0]);
    teardown(&f);
}

TEST(embed, advertised_addresses)
{
    /* An advertised client address, not the bound one, is what the node
     * reports and what it writes to STORE/addresses. */
    struct fixture f;
    char path[600];
    char line[128];
    bool found = false;
    FILE *file;

    setup(&f, 1);
    snprintf(f.advertise_client_addr, sizeof(f.advertise_client_addr),
             "10.1.2.3:26257");
    start_node(&f, 0);
    snprintf(path, sizeof(path), "%s/addresses", f.stores[0]);
    file = fopen(path, "r");
    ASSERT_TRUE(file != NULL);
    while (fgets(line, sizeof(line), file) != NULL) {
        if (strcmp(line, "client 10.1.2.3:26257\n") == 0) {
            found = true;
        }
    }
    fclose(file);
    ASSERT_TRUE(found);
    teardown(&f);
}

TEST(embed, start_errors)
{
    /* rkv_node_start() fails cleanly, with a message, on a missing join
     * list, an invalid address, a port in use, and a store that belongs
     * to another node id. */
    struct rkv_node_config config = {0};
    struct rkv_node *node = NULL;
    struct sockaddr_in sa = {0};
    socklen_t sa_len = sizeof(sa);
    char store[512];
    char busy_addr[64];
    char errmsg[256];
    const char *join[2];
    int fd;

    snprintf(store, sizeof(store), "%s/node", rkv_test_tmpdir());
    config.store_dir = store;
    ASSERT_INT_EQ(rkv_node_start(&config, &node, errmsg, sizeof(errmsg)),
                  RKV_ECONFIG);
    ASSERT_TRUE(strstr(errmsg, "join") != NULL);

    join[0] = "nonsense";
    config.join = join;
    config.n_join = 1;
    config.node_id = 1;
    ASSERT_INT_EQ(rkv_node_start(&config, &node, errmsg, sizeof(errmsg)),
                  RKV_ECONFIG);
    ASSERT_TRUE(strstr(errmsg, "nonsense") != NULL);

    /* A map limit under RKV_NODE_MAP_SIZE_MAX_MIN. */
    join[0] = "127.0.0.1:1";
    config.map_size_max = 4096;
    ASSERT_INT_EQ(rkv_node_start(&config, &node, errmsg, sizeof(errmsg)),
                  RKV_ECONFIG);
    ASSERT_TRUE(strstr(errmsg, "map_size_max") != NULL);
    config.map_size_max = 0;

    /* A port held by another socket. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_TRUE(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_INT_EQ(listen(fd, 1), 0);
    ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *)&sa, &sa_len), 0);
    snprintf(busy_addr, sizeof(busy_addr), "127.0.0.1:%u",
             (unsigned)ntohs(sa.sin_port));
    join[0] = busy_addr;
    config.listen_addr = busy_addr;
    ASSERT_INT_EQ(rkv_node_start(&config, &node, errmsg, sizeof(errmsg)),
                  -EADDRINUSE);
    ASSERT_TRUE(strstr(errmsg, busy_addr) != NULL);
    close(fd);

    /* A store initialized as node 1 refuses to start as node 2. */
    config.listen_addr = NULL;
    join[0] = "127.0.0.1:1";
    ASSERT_OK(rkv_node_start(&config, &node, errmsg, sizeof(errmsg)));
    ASSERT_OK(rkv_node_init(node));
    rkv_node_stop(node);
    join[1] = "127.0.0.1:2";
    config.n_join = 2;
    config.node_id = 2;
    ASSERT_INT_EQ(rkv_node_start(&config, &node, errmsg, sizeof(errmsg)),
                  RKV_ECLUSTERID);
    ASSERT_TRUE(strstr(errmsg, "node 1") != NULL);
}

/* xorshift64: the mutation test's reproducible random numbers. */
static uint64_t fuzz_next(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Sends a 4-byte length and payload, flipping a few random bytes of the
 * payload first, then closes the connection. */
static void fuzz_send(const char *addr, uint8_t *payload, size_t len,
                      uint64_t *state, bool with_hello)
{
    uint8_t header[4];
    int fd = rkv_test_rpc_connect(addr);
    size_t n_flips = 1 + fuzz_next(state) % 4;

    if (fd < 0) {
        return;
    }
    if (with_hello) {
        /* A valid Hello from node 3 of this cluster (no secret is set). */
        Rkv__Peer__Hello hello = RKV__PEER__HELLO__INIT;
        Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
        uint8_t buf[256];
        size_t hello_len;

        hello.version = 1;
        hello.node_id = 3;
        hello.peer_addr = "127.0.0.1:1";
        hello.client_addr = "127.0.0.1:2";
        frame.hello = &hello;
        hello_len = rkv__peer__frame__pack(&frame, buf + 4);
        rkv_put_be32(buf, (uint32_t)hello_len);
        send(fd, buf, 4 + hello_len, MSG_NOSIGNAL);
    }
    for (size_t i = 0; i < n_flips && len > 0; i++) {
        payload[fuzz_next(state) % len] ^=
            (uint8_t)(1 + fuzz_next(state) % 255);
    }
    rkv_put_be32(header, (uint32_t)len);
    send(fd, header, 4, MSG_NOSIGNAL);
    send(fd, payload, len, MSG_NOSIGNAL);
    usleep(2 * 1000);
    close(fd);
}

TEST(embed, mutated_frames_keep_nodes_up)
{
    /* Valid client requests and peer frames (after a valid Hello) with
     * random bytes flipped reach every port of a running cluster: each
     * is rejected or handled, no node stops, and the cluster still
     * serves. The seed is printed so that a failure replays. */
    struct fixture f;
    const char *seed_env = getenv("RKV_TEST_SEED");
    uint64_t seed = seed_env != NULL ? strtoull(seed_env, NULL, 10)
                                     : rkv_monotonic_ms() | 1;
    uint64_t state = seed;

    fprintf(stderr,
            "mutated_frames seed=%llu (replay: RKV_TEST_SEED=%llu "
            "test_node_embed mutated_frames)\n",
            (unsigned long long)seed, (unsigned long long)seed);
    setup(&f, 3);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "before", "1", REQUEST_TIMEOUT_MS));
    for (int round = 0; round < 300; round++) {
        size_t target = fuzz_next(&state) % 3;
        uint8_t buf[512];
        size_t len;

        if (round % 2 == 0) {
            Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
            Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;

            put.key.data = (uint8_t *)"fuzzed";
            put.key.len = 6;
            put.value.data = (uint8_t *)"value";
            put.value.len = 5;
            request.id = (uint64_t)round;
            request.op_case = RKV__RPC__REQUEST__OP_PUT;
            request.put = &put;
            len = rkv__rpc__request__pack(&request, buf);
            fuzz_send(f.client_addrs[target], buf, len, &state, false);
        } else {
            Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
            RkvRaft__Message msg = RKV_RAFT__MESSAGE__INIT;
            RkvRaft__Message *msgs[1] = {&msg};

            msg.group_id = 1;
            msg.type = (RkvRaft__MessageType)(fuzz_next(&state) % 12);
            msg.from = 3;
            msg.to = target + 1;
            msg.term = fuzz_next(&state) % 4;
            msg.index = fuzz_next(&state) % 20;
            msg.commit = fuzz_next(&state) % 20;
            frame.n_messages = 1;
            frame.messages = msgs;
            len = rkv__peer__frame__pack(&frame, buf);
            fuzz_send(f.peer_addrs[target], buf, len, &state, true);
        }
    }
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "after", "2", REQUEST_TIMEOUT_MS));
    teardown(&f);
}

/* Sends a frame header announcing 1 MiB and 1000 bytes of it on a new
 * connection to addr; returns the socket. */
static int send_half_frame(const char *addr)
{
    uint8_t buf[4 + 1000];
    int fd = rkv_test_rpc_connect(addr);

    ASSERT_INT_GE(fd, 0);
    memset(buf, 0, sizeof(buf));
    rkv_put_be32(buf, 1u << 20);
    ASSERT_INT_EQ(write(fd, buf, sizeof(buf)), (int)sizeof(buf));
    return fd;
}

/* Returns whether the node closed fd within timeout_ms. */
static bool closed_within(int fd, int timeout_ms)
{
    uint64_t deadline_ms = rkv_monotonic_ms() + (uint64_t)timeout_ms;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[256];

    /* Bytes the node sent first (the peer port's Challenge) are skipped. */
    for (;;) {
        uint64_t now_ms = rkv_monotonic_ms();
        int wait_ms = now_ms < deadline_ms ? (int)(deadline_ms - now_ms) : 0;

        if (poll(&pfd, 1, wait_ms) != 1) {
            return false;
        }
        if (read(fd, buf, sizeof(buf)) <= 0) {
            return true;
        }
    }
}

TEST(embed, half_sent_frames_are_closed)
{
    /* A connection that stops inside a frame holds a buffer of the declared
     * size, so the node closes it after RKV_NODE_FRAME_TIMEOUT_MS (20 s) on
     * the client and the peer port. An idle connection stays open, and the
     * node serves requests meanwhile. */
    struct fixture f;
    int client_fd;
    int peer_fd;
    int idle_fd;
    bool found = false;
    char value[8];

    setup(&f, 1);
    start_all(&f);
    ASSERT_OK(rkv_node_init(f.nodes[0]));
    idle_fd = rkv_test_rpc_connect(f.client_addrs[0]);
    ASSERT_INT_GE(idle_fd, 0);
    client_fd = send_half_frame(f.client_addrs[0]);
    peer_fd = send_half_frame(f.peer_addrs[0]);
    ASSERT_OK(rkv_test_put(f.client_addrs, 1, "k", "v", REQUEST_TIMEOUT_MS));

    ASSERT_TRUE(closed_within(client_fd, 30000));
    ASSERT_TRUE(closed_within(peer_fd, 5000));
    ASSERT_FALSE(closed_within(idle_fd, 0));
    ASSERT_OK(rkv_test_get(f.client_addrs, 1, "k", &found, value, sizeof(value),
                           REQUEST_TIMEOUT_MS));
    ASSERT_TRUE(found);
    close(idle_fd);
    close(client_fd);
    close(peer_fd);
    teardown(&f);
}
