/*
 * Tests of what a node accepts on its peer port from a process that is not
 * a member (a forged or replayed Hello, forged Raft messages), of the
 * connection limits, and of scan replies cut to the client frame limit. Nodes
 * run in this process through the embedding API, on real LMDB stores and real
 * TCP on 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/common.h"
#include "node/node_internal.h"
#include "node/peer.pb-c.h"
#include "rangekv/rangekv.h"
#include "tests/lib/node_rpc.h"
#include "tests/lib/test.h"

#define NODES_MAX 3
/* Time one routed request may take, retries included. */
#define REQUEST_TIMEOUT_MS 20000
/* Time a node gets to act on a forged frame before the test gives up. */
#define FORGED_WAIT_MS 5000
/* The nonce in the test's Hellos. */
#define TEST_NONCE "the test's own nonce"

struct fixture {
    struct rkv_node *nodes[NODES_MAX];
    size_t n_nodes;
    char stores[NODES_MAX][512];
    char peer_addrs[NODES_MAX][RKV_NODE_ADDR_MAX];
    const char *join[NODES_MAX];
    char client_addrs[NODES_MAX][RKV_TEST_ADDR_MAX];
    const char *secret; /* every node's; NULL: none */
};

/* Starts n nodes with secret and connection limits (0: the defaults),
 * initializes the cluster and waits until it serves a put. */
static void setup_limits(struct fixture *f, size_t n, const char *secret,
                         uint32_t clients_max, uint32_t peers_pending_max)
{
    memset(f, 0, sizeof(*f));
    f->n_nodes = n;
    f->secret = secret;
    for (size_t i = 0; i < n; i++) {
        snprintf(f->stores[i], sizeof(f->stores[i]), "%s/node%zu",
                 rkv_test_tmpdir(), i + 1);
        snprintf(f->peer_addrs[i], sizeof(f->peer_addrs[i]), "127.0.0.1:%u",
                 (unsigned)rkv_test_pick_port());
        f->join[i] = f->peer_addrs[i];
    }
    for (size_t i = 0; i < n; i++) {
        struct rkv_node_config config = {0};
        char peer[RKV_NODE_ADDR_MAX];
        char client[RKV_NODE_ADDR_MAX];
        char errmsg[256];

        config.store_dir = f->stores[i];
        config.listen_addr = f->peer_addrs[i];
        config.join = f->join;
        config.n_join = n;
        config.node_id = i + 1;
        config.tick_ms = 20;
        config.cluster_secret = secret;
        config.clients_max = clients_max;
        config.peers_pending_max = peers_pending_max;
        if (rkv_node_start(&config, &f->nodes[i], errmsg, sizeof(errmsg)) !=
            0) {
            rkv_test_fail(__FILE__, __LINE__, "starting node %zu failed: %s",
                          i + 1, errmsg);
        }
        rkv_node_addresses(f->nodes[i], peer, client);
        snprintf(f->client_addrs[i], RKV_TEST_ADDR_MAX, "%s", client);
    }
    ASSERT_OK(rkv_node_init(f->nodes[0]));
    ASSERT_OK(
        rkv_test_put(f->client_addrs, n, "ready", "1", REQUEST_TIMEOUT_MS));
}

static void setup(struct fixture *f, size_t n, const char *secret)
{
    setup_limits(f, n, secret, 0, 0);
}

static void teardown(struct fixture *f)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        rkv_node_stop(f->nodes[i]);
    }
}

/* Returns node i's status; free *response after use. */
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

static uint64_t cluster_id_of(struct fixture *f, size_t i)
{
    Rkv__Rpc__Response *response;
    uint64_t id = status_of(f, i, &response)->cluster_id;

    rkv__rpc__response__free_unpacked(response, NULL);
    return id;
}

/* Returns node i's counter of Raft messages dropped as forged. */
static uint64_t raft_rejected_of(struct fixture *f, size_t i)
{
    Rkv__Rpc__Response *response;
    uint64_t n = status_of(f, i, &response)->n_raft_rejected;

    rkv__rpc__response__free_unpacked(response, NULL);
    return n;
}

static uint64_t peers_rejected_of(struct fixture *f, size_t i)
{
    Rkv__Rpc__Response *response;
    uint64_t n = status_of(f, i, &response)->n_peers_rejected;

    rkv__rpc__response__free_unpacked(response, NULL);
    return n;
}

/* Copies the client address node i lists for node member_id into out. */
static void member_addr_of(struct fixture *f, size_t i, uint64_t member_id,
                           char out[RKV_TEST_ADDR_MAX])
{
    Rkv__Rpc__Response *response;
    Rkv__Rpc__StatusResponse *status = status_of(f, i, &response);

    out[0] = '\0';
    for (size_t k = 0; k < status->n_nodes; k++) {
        if (status->nodes[k]->node_id == member_id) {
            snprintf(out, RKV_TEST_ADDR_MAX, "%s",
                     status->nodes[k]->client_addr);
        }
    }
    rkv__rpc__response__free_unpacked(response, NULL);
}

/* Returns range 1's term as node i reports it. */
static uint64_t range1_term_of(struct fixture *f, size_t i)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__RangesRequest ranges = RKV__RPC__RANGES_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    uint64_t term = 0;

    request.id = 2;
    request.op_case = RKV__RPC__REQUEST__OP_RANGES;
    request.ranges = &ranges;
    response = rkv_test_rpc_call_addr(f->client_addrs[i], &request);
    ASSERT_TRUE(response != NULL);
    ASSERT_INT_EQ(response->error, 0);
    ASSERT_INT_EQ(response->result_case, RKV__RPC__RESPONSE__RESULT_RANGES);
    for (size_t k = 0; k < response->ranges->n_ranges; k++) {
        if (response->ranges->ranges[k]->range_id == 1) {
            term = response->ranges->ranges[k]->term;
        }
    }
    rkv__rpc__response__free_unpacked(response, NULL);
    ASSERT_UINT_GT(term, 0);
    return term;
}

/* Reads exactly len bytes from fd. */
static void read_full(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = recv(fd, buf + done, len - done, 0);

        ASSERT_INT_GT(n, 0);
        done += (size_t)n;
    }
}

/* Reads one small peer Frame from fd; free it with
 * rkv__peer__frame__free_unpacked(). */
static Rkv__Peer__Frame *forged_recv(int fd)
{
    uint8_t header[4];
    uint8_t payload[256];
    uint32_t len;
    Rkv__Peer__Frame *frame;

    read_full(fd, header, sizeof(header));
    len = rkv_get_be32(header);
    ASSERT_UINT_LE(len, sizeof(payload));
    read_full(fd, payload, len);
    frame = rkv__peer__frame__unpack(NULL, len, payload);
    ASSERT_TRUE(frame != NULL);
    return frame;
}

/* Connects to a peer port, with a receive timeout of FORGED_WAIT_MS, and
 * reads the node's Challenge into nonce. */
static int forged_connect(const char *addr, uint8_t nonce[RKV_NODE_NONCE_LEN])
{
    struct timeval timeout = {.tv_sec = FORGED_WAIT_MS / 1000};
    int fd = rkv_test_rpc_connect(addr);
    Rkv__Peer__Frame *frame;

    ASSERT_INT_GE(fd, 0);
    ASSERT_OK(
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)));
    frame = forged_recv(fd);
    ASSERT_TRUE(frame->challenge != NULL);
    ASSERT_UINT_EQ(frame->challenge->nonce.len, RKV_NODE_NONCE_LEN);
    memcpy(nonce, frame->challenge->nonce.data, RKV_NODE_NONCE_LEN);
    rkv__peer__frame__free_unpacked(frame, NULL);
    return fd;
}

/* Sends one length-prefixed peer Frame on fd. */
static void forged_send(int fd, const Rkv__Peer__Frame *frame)
{
    size_t len = rkv__peer__frame__get_packed_size(frame);
    uint8_t *buf = malloc(4 + len);

    ASSERT_TRUE(buf != NULL);
    rkv_put_be32(buf, (uint32_t)len);
    rkv__peer__frame__pack(frame, buf + 4);
    ASSERT_INT_EQ(send(fd, buf, 4 + len, MSG_NOSIGNAL), (ssize_t)(4 + len));
    free(buf);
}

/* Sends a Hello claiming to be node_id of cluster_id, with digest when it
 * is not NULL. */
static void forged_hello_digest(int fd, uint64_t node_id, uint64_t cluster_id,
                                const char *client_addr, uint8_t digest[32])
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Hello hello = RKV__PEER__HELLO__INIT;

    static uint8_t nonce[RKV_NODE_NONCE_LEN] = TEST_NONCE;

    if (digest != NULL) {
        hello.has_auth_digest = true;
        hello.auth_digest.data = digest;
        hello.auth_digest.len = 32;
    }
    hello.has_nonce = true;
    hello.nonce.data = nonce;
    hello.nonce.len = sizeof(nonce);
    hello.version = RKV_NODE_PEER_PROTOCOL_VERSION;
    hello.node_id = node_id;
    hello.cluster_id = cluster_id;
    hello.peer_addr = "127.0.0.1:1";
    hello.client_addr = (char *)client_addr;
    frame.hello = &hello;
    forged_send(fd, &frame);
}

/* Sends a Hello claiming to be node_id of cluster_id, with no digest. */
static void forged_hello(int fd, uint64_t node_id, uint64_t cluster_id,
                         const char *client_addr)
{
    forged_hello_digest(fd, node_id, cluster_id, client_addr, NULL);
}

/* Sends one Raft message of type to range 1 of node `to`. */
static void forged_raft(int fd, RkvRaft__MessageType type, uint64_t from,
                        uint64_t to, uint64_t term)
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    RkvRaft__Message msg = RKV_RAFT__MESSAGE__INIT;
    RkvRaft__Message *msgs[1] = {&msg};

    msg.group_id = 1;
    msg.type = type;
    msg.from = from;
    msg.to = to;
    msg.term = term;
    frame.n_messages = 1;
    frame.messages = msgs;
    forged_send(fd, &frame);
}

/* Returns whether the node closed fd within FORGED_WAIT_MS. */
static bool closed_by_node(int fd)
{
    uint8_t byte;
    ssize_t n = recv(fd, &byte, 1, 0);

    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Returns whether the node closed fd within timeout_ms, skipping any bytes
 * it sent first. */
static bool closed_within(int fd, int timeout_ms)
{
    uint64_t deadline_ms = rkv_monotonic_ms() + (uint64_t)timeout_ms;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint8_t buf[256];

    for (;;) {
        uint64_t now_ms = rkv_monotonic_ms();
        int wait_ms = now_ms < deadline_ms ? (int)(deadline_ms - now_ms) : 0;
        ssize_t n;

        if (poll(&pfd, 1, wait_ms) != 1) {
            return false;
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return true;
        }
        if (n < 0) {
            return false;
        }
    }
}

/* Waits until node i has dropped more than `before` forged Raft messages. */
static void wait_raft_rejected(struct fixture *f, size_t i, uint64_t before)
{
    for (int attempt = 0; attempt < FORGED_WAIT_MS / 20; attempt++) {
        if (raft_rejected_of(f, i) > before) {
            return;
        }
        usleep(20 * 1000);
    }
    rkv_test_fail(__FILE__, __LINE__,
                  "node %zu did not count a forged raft message", i + 1);
}

TEST(peer_guard, impossible_terms_dropped)
{
    /* Heartbeats and appends that name the real sender and cluster but
     * carry a term of UINT64_MAX or 2^32 + 1 above the current one are
     * dropped and counted: range 1 keeps its term and serves writes. */
    static const uint64_t jumps[] = {UINT64_MAX, (1ull << 32) + 1};
    static const RkvRaft__MessageType types[] = {
        RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT,
        RKV_RAFT__MESSAGE_TYPE__MSG_APPEND};
    struct fixture f;
    uint64_t term;
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    int fd;

    setup(&f, 3, NULL);
    term = range1_term_of(&f, 0);
    fd = forged_connect(f.peer_addrs[0], nonce);
    forged_hello(fd, 3, cluster_id_of(&f, 0), "127.0.0.1:2");
    for (size_t j = 0; j < 2; j++) {
        for (size_t t = 0; t < 2; t++) {
            uint64_t before = raft_rejected_of(&f, 0);
            uint64_t forged =
                jumps[j] == UINT64_MAX ? UINT64_MAX : term + jumps[j];

            forged_raft(fd, types[t], 3, 1, forged);
            wait_raft_rejected(&f, 0, before);
        }
    }
    close(fd);

    for (size_t i = 0; i < 3; i++) {
        ASSERT_UINT_LT(range1_term_of(&f, i), term + (1ull << 32));
    }
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "after", "1", REQUEST_TIMEOUT_MS));
    teardown(&f);
}

TEST(peer_guard, forged_sender_dropped)
{
    /* A connection that said it is node 3 cannot send a message from node
     * 2: it is counted and dropped, so node 1 never adopts its term. */
    struct fixture f;
    uint64_t term;
    uint64_t before;
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    int fd;

    setup(&f, 3, NULL);
    term = range1_term_of(&f, 0);
    fd = forged_connect(f.peer_addrs[0], nonce);
    forged_hello(fd, 3, cluster_id_of(&f, 0), "127.0.0.1:2");
    before = raft_rejected_of(&f, 0);
    forged_raft(fd, RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT, 2, 1, term + 1000);
    wait_raft_rejected(&f, 0, before);
    close(fd);
    ASSERT_UINT_LT(range1_term_of(&f, 0), term + 1000);
    teardown(&f);
}

TEST(peer_guard, hello_without_cluster_id_rejected)
{
    /* An initialized node closes a connection whose Hello has cluster id
     * 0 or another cluster's id, or names a node id outside its member
     * list, and counts each rejection. */
    struct fixture f;
    uint64_t cluster_id;
    struct {
        uint64_t node_id;
        uint64_t cluster_id;
    } cases[4];

    setup(&f, 3, NULL);
    cluster_id = cluster_id_of(&f, 0);
    cases[0].node_id = 2;
    cases[0].cluster_id = 0;
    cases[1].node_id = 2;
    cases[1].cluster_id = cluster_id + 1;
    cases[2].node_id = 4;
    cases[2].cluster_id = cluster_id;
    cases[3].node_id = 1;
    cases[3].cluster_id = cluster_id;
    for (size_t c = 0; c < 4; c++) {
        uint8_t nonce[RKV_NODE_NONCE_LEN];
        uint64_t before = peers_rejected_of(&f, 0);
        int fd = forged_connect(f.peer_addrs[0], nonce);

        forged_hello(fd, cases[c].node_id, cases[c].cluster_id, "127.0.0.1:2");
        ASSERT_TRUE(closed_by_node(fd));
        close(fd);
        ASSERT_UINT_EQ(peers_rejected_of(&f, 0), before + 1);
    }
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "after", "1", REQUEST_TIMEOUT_MS));
    teardown(&f);
}

TEST(peer_guard, hello_keeps_member_address)
{
    /* Without a cluster secret a Hello proves nothing, so one naming node 2
     * with another client address is accepted for its messages but does
     * not replace the address node 1 stores for node 2. */
    struct fixture f;
    char known[RKV_TEST_ADDR_MAX];
    char after[RKV_TEST_ADDR_MAX];
    uint64_t before;
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    int fd;

    setup(&f, 3, NULL);
    member_addr_of(&f, 0, 2, known);
    ASSERT_STR_EQ(known, f.client_addrs[1]);
    fd = forged_connect(f.peer_addrs[0], nonce);
    forged_hello(fd, 2, cluster_id_of(&f, 0), "127.0.0.1:2");
    /* A message the node counts proves it has handled the Hello before. */
    before = raft_rejected_of(&f, 0);
    forged_raft(fd, RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT, 2, 1, UINT64_MAX);
    wait_raft_rejected(&f, 0, before);
    member_addr_of(&f, 0, 2, after);
    ASSERT_STR_EQ(after, f.client_addrs[1]);
    close(fd);
    teardown(&f);
}

TEST(peer_guard, secret_rejects_forged_hello)
{
    /* With a cluster secret, a Hello without its digest is rejected even
     * with the right cluster id and node id. */
    struct fixture f;
    uint64_t before;
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    int fd;

    setup(&f, 3, "correct horse");
    before = peers_rejected_of(&f, 0);
    fd = forged_connect(f.peer_addrs[0], nonce);
    forged_hello(fd, 3, cluster_id_of(&f, 0), "127.0.0.1:2");
    ASSERT_TRUE(closed_by_node(fd));
    close(fd);
    ASSERT_UINT_EQ(peers_rejected_of(&f, 0), before + 1);
    teardown(&f);
}

TEST(peer_guard, replayed_hello_rejected)
{
    /* A Hello with the digest of the right secret over this connection's
     * nonce is accepted; the same Hello sent on another connection, whose
     * nonce differs, is rejected. */
    static const char secret[] = "correct horse";
    struct fixture f;
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    uint8_t other_nonce[RKV_NODE_NONCE_LEN];
    uint8_t digest[32];
    uint64_t cluster_id;
    uint64_t before;
    int fd;
    int replay_fd;

    setup(&f, 3, secret);
    cluster_id = cluster_id_of(&f, 0);
    fd = forged_connect(f.peer_addrs[0], nonce);
    rkv_node__auth_digest(secret, nonce, 3, digest);
    forged_hello_digest(fd, 3, cluster_id, f.client_addrs[2], digest);
    /* A counted message shows the Hello was accepted. */
    before = raft_rejected_of(&f, 0);
    forged_raft(fd, RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT, 3, 1, UINT64_MAX);
    wait_raft_rejected(&f, 0, before);
    /* The node's Welcome proves it knows the secret, over our nonce. */
    {
        static const uint8_t our_nonce[RKV_NODE_NONCE_LEN] = TEST_NONCE;
        uint8_t expected[32];
        Rkv__Peer__Frame *frame = forged_recv(fd);

        rkv_node__auth_digest(secret, our_nonce, 1, expected);
        ASSERT_TRUE(frame->welcome != NULL);
        ASSERT_TRUE(frame->welcome->has_auth_digest);
        ASSERT_MEM_EQ(frame->welcome->auth_digest.data,
                      frame->welcome->auth_digest.len, expected, 32);
        rkv__peer__frame__free_unpacked(frame, NULL);
    }

    before = peers_rejected_of(&f, 0);
    replay_fd = forged_connect(f.peer_addrs[0], other_nonce);
    ASSERT_TRUE(memcmp(nonce, other_nonce, sizeof(nonce)) != 0);
    forged_hello_digest(replay_fd, 3, cluster_id, f.client_addrs[2], digest);
    ASSERT_TRUE(closed_by_node(replay_fd));
    ASSERT_UINT_EQ(peers_rejected_of(&f, 0), before + 1);
    close(replay_fd);
    close(fd);
    teardown(&f);
}

/* Connects to a client port and checks that the node serves a STATUS
 * request on that connection. */
static int served_client(const char *addr)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__StatusRequest status = RKV__RPC__STATUS_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    int fd = rkv_test_rpc_connect(addr);

    ASSERT_INT_GE(fd, 0);
    request.id = 4;
    request.op_case = RKV__RPC__REQUEST__OP_STATUS;
    request.status = &status;
    response = rkv_test_rpc_call(fd, &request);
    ASSERT_TRUE(response != NULL);
    ASSERT_INT_EQ(response->error, 0);
    rkv__rpc__response__free_unpacked(response, NULL);
    return fd;
}

TEST(peer_guard, connection_limits)
{
    /* Past clients_max client connections and peers_pending_max peer
     * connections without a Hello, a new connection is closed at once;
     * closing one makes room again. */
    struct fixture f;
    int clients[4];
    int peers[2];
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    int fd;

    setup_limits(&f, 3, NULL, 4, 2);
    /* The connections of the setup's routed put close asynchronously. */
    usleep(300 * 1000);
    for (size_t i = 0; i < 4; i++) {
        clients[i] = served_client(f.client_addrs[0]);
    }
    fd = rkv_test_rpc_connect(f.client_addrs[0]);
    ASSERT_INT_GE(fd, 0);
    ASSERT_TRUE(closed_within(fd, FORGED_WAIT_MS));
    close(fd);
    close(clients[0]);
    usleep(300 * 1000);
    clients[0] = served_client(f.client_addrs[0]);

    for (size_t i = 0; i < 2; i++) {
        peers[i] = forged_connect(f.peer_addrs[0], nonce);
    }
    fd = rkv_test_rpc_connect(f.peer_addrs[0]);
    ASSERT_INT_GE(fd, 0);
    ASSERT_TRUE(closed_within(fd, FORGED_WAIT_MS));
    close(fd);
    /* A Hello moves a connection out of the pending ones. */
    forged_hello(peers[0], 3, cluster_id_of(&f, 1), f.client_addrs[2]);
    usleep(300 * 1000);
    fd = forged_connect(f.peer_addrs[0], nonce);
    ASSERT_FALSE(closed_within(fd, 500));
    close(fd);

    /* The cluster serves again once the connections are closed. */
    for (size_t i = 0; i < 4; i++) {
        close(clients[i]);
    }
    close(peers[0]);
    close(peers[1]);
    ASSERT_OK(
        rkv_test_put(f.client_addrs, 3, "after", "1", REQUEST_TIMEOUT_MS));
    teardown(&f);
}

TEST(peer_guard, silent_peer_closed)
{
    /* A peer connection that sends no Hello is closed after
     * RKV_NODE_PEER_HELLO_TIMEOUT_MS (10 s). */
    struct fixture f;
    uint8_t nonce[RKV_NODE_NONCE_LEN];
    int fd;

    setup(&f, 1, NULL);
    fd = forged_connect(f.peer_addrs[0], nonce);
    ASSERT_TRUE(closed_within(fd, RKV_NODE_PEER_HELLO_TIMEOUT_MS + 5000));
    close(fd);
    teardown(&f);
}

TEST(peer_guard, impostor_acceptor_gets_nothing)
{
    /* A process that listens on a stopped member's peer address gets the
     * other members' Hellos but cannot answer with a valid Welcome without
     * the secret, so they close the connection and send it no Raft
     * traffic. */
    static const char secret[] = "correct horse";
    struct fixture f;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval timeout = {.tv_sec = FORGED_WAIT_MS / 1000};
    Rkv__Peer__Frame challenge_frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Challenge challenge = RKV__PEER__CHALLENGE__INIT;
    Rkv__Peer__Frame welcome_frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Welcome welcome = RKV__PEER__WELCOME__INIT;
    uint8_t nonce[RKV_NODE_NONCE_LEN] = "impostor nonce";
    uint8_t wrong[32] = {0};
    Rkv__Peer__Frame *hello;
    int listen_fd;
    int fd;

    setup(&f, 3, secret);
    rkv_node_stop(f.nodes[2]);
    f.n_nodes = 2;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_INT_GE(listen_fd, 0);
    ASSERT_OK(setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &(int){1},
                         sizeof(int)));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)atoi(strrchr(f.peer_addrs[2], ':') + 1));
    ASSERT_OK(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)));
    ASSERT_OK(listen(listen_fd, 8));

    fd = accept(listen_fd, NULL, NULL);
    ASSERT_INT_GE(fd, 0);
    ASSERT_OK(
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)));
    challenge.nonce.data = nonce;
    challenge.nonce.len = sizeof(nonce);
    challenge_frame.challenge = &challenge;
    forged_send(fd, &challenge_frame);
    hello = forged_recv(fd);
    ASSERT_TRUE(hello->hello != NULL);
    ASSERT_TRUE(hello->hello->has_auth_digest);
    rkv__peer__frame__free_unpacked(hello, NULL);
    welcome.has_auth_digest = true;
    welcome.auth_digest.data = wrong;
    welcome.auth_digest.len = sizeof(wrong);
    welcome_frame.welcome = &welcome;
    forged_send(fd, &welcome_frame);
    /* Closed with nothing more sent: no Raft messages reach the impostor. */
    {
        uint8_t byte;

        ASSERT_INT_EQ(recv(fd, &byte, 1, 0), 0);
    }
    close(fd);
    close(listen_fd);
    teardown(&f);
}

/* ---- scans over large values ------------------------------------------- */

/* Sends a scan of [start, "bih") with limit 100 to one node. */
static Rkv__Rpc__Response *scan_from(const char *addr, const char *start)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__ScanRequest scan = RKV__RPC__SCAN_REQUEST__INIT;
    Rkv__Rpc__Response *response;

    request.id = 3;
    request.op_case = RKV__RPC__REQUEST__OP_SCAN;
    request.scan = &scan;
    scan.start_key.data = (uint8_t *)start;
    scan.start_key.len = strlen(start);
    scan.end_key.data = (uint8_t *)"bih";
    scan.end_key.len = 3;
    scan.limit = 100;
    response = rkv_test_rpc_call_addr(addr, &request);
    ASSERT_TRUE(response != NULL);
    ASSERT_INT_EQ(response->error, 0);
    ASSERT_INT_EQ(response->result_case, RKV__RPC__RESPONSE__RESULT_SCAN);
    return response;
}

TEST(peer_guard, scan_cut_to_frame_limit)
{
    /* Five values of 4 MiB (the value limit) make 20 MiB, more than one
     * 16 MiB client frame: each reply contains the pairs that fit, sets
     * more_after and resume_key, and paging returns all five pairs in order. */
    const size_t value_len = 4u * 1024 * 1024;
    struct fixture f;
    char *value = malloc(value_len + 1);
    char start[RKV_TEST_ADDR_MAX] = "big";
    size_t n_seen = 0;
    size_t n_replies = 0;
    bool more = true;

    ASSERT_TRUE(value != NULL);
    setup(&f, 1, NULL);
    for (int i = 0; i < 5; i++) {
        char key[16];

        snprintf(key, sizeof(key), "big%d", i);
        memset(value, 'a' + i, value_len);
        value[value_len] = '\0';
        ASSERT_OK(
            rkv_test_put(f.client_addrs, 1, key, value, REQUEST_TIMEOUT_MS));
    }
    while (more) {
        Rkv__Rpc__Response *response = scan_from(f.client_addrs[0], start);
        Rkv__Rpc__ScanResponse *scan = response->scan;

        n_replies++;
        ASSERT_UINT_GT(scan->n_pairs, 0);
        ASSERT_UINT_LT(scan->n_pairs, 5);
        for (size_t k = 0; k < scan->n_pairs; k++) {
            char key[16];

            snprintf(key, sizeof(key), "big%zu", n_seen);
            ASSERT_MEM_EQ(scan->pairs[k]->key.data, scan->pairs[k]->key.len,
                          key, strlen(key));
            ASSERT_UINT_EQ(scan->pairs[k]->value.len, value_len);
            ASSERT_INT_EQ(scan->pairs[k]->value.data[0], 'a' + (int)n_seen);
            n_seen++;
        }
        more = scan->more_after && scan->has_resume_key;
        if (more) {
            ASSERT_UINT_LT(scan->resume_key.len, sizeof(start));
            memcpy(start, scan->resume_key.data, scan->resume_key.len);
            start[scan->resume_key.len] = '\0';
        }
        rkv__rpc__response__free_unpacked(response, NULL);
        ASSERT_UINT_LE(n_replies, 5);
    }
    ASSERT_UINT_EQ(n_seen, 5);
    ASSERT_UINT_GE(n_replies, 2);
    free(value);
    teardown(&f);
}

TEST(peer_guard, silent_acceptor_redialed)
{
    /* A dial that a process on a member's peer address accepts, and then
     * sends no Challenge on, is closed after RKV_NODE_PEER_HELLO_TIMEOUT_MS
     * (10 s) and dialed again. */
    struct fixture f;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct pollfd pfd;
    uint8_t byte;
    int listen_fd;
    int first;
    int second;

    setup(&f, 2, NULL);
    rkv_node_stop(f.nodes[1]);
    f.n_nodes = 1;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_INT_GE(listen_fd, 0);
    ASSERT_OK(setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &(int){1},
                         sizeof(int)));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)atoi(strrchr(f.peer_addrs[1], ':') + 1));
    ASSERT_OK(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)));
    ASSERT_OK(listen(listen_fd, 8));

    first = accept(listen_fd, NULL, NULL);
    ASSERT_INT_GE(first, 0);
    pfd.fd = listen_fd;
    pfd.events = POLLIN;
    ASSERT_INT_EQ(poll(&pfd, 1, RKV_NODE_PEER_HELLO_TIMEOUT_MS + 5000), 1);
    second = accept(listen_fd, NULL, NULL);
    ASSERT_INT_GE(second, 0);
    /* The first dial was closed by the node, not left open. */
    ASSERT_INT_EQ(recv(first, &byte, 1, 0), 0);
    close(second);
    close(first);
    close(listen_fd);
    teardown(&f);
}
