/*
 * The peer transport: Raft messages and forwarded proposals between nodes
 * over TCP (node/peer.proto).
 *
 * Happy path: each node dials every other member of its join list and uses
 * that connection only to send; it receives on the connections it accepts.
 * The acceptor first sends a Challenge with a random nonce. The dialer
 * answers with a Hello whose digest covers that nonce, so a recorded Hello
 * is useless on another connection, and which carries the dialer's own
 * nonce. The acceptor checks the protocol version, the node id, the
 * cluster id and (when a secret is set) the digest, and answers with a
 * Welcome whose digest covers the dialer's nonce. The dialer checks it
 * before it sends any Raft message, so a process that listens on a
 * stopped member's address receives nothing. The acceptor then reads
 * Frames of batched Raft messages and dispatches each by group id (the
 * range id) to its replica. Messages to one peer produced in one loop
 * iteration go out as one frame in one write.
 *
 * Failure modes:
 *   - dial failure or a lost connection: the peer is redialed after a
 *     backoff doubling from RKV_NODE_RECONNECT_MIN_MS to _MAX_MS; retries
 *     are logged at DEBUG, then at WARN every 20th failure; messages to a
 *     peer without a connection are dropped (Raft resends);
 *   - a Hello with another cluster id, or with none once this node is
 *     initialized (RKV_ECLUSTERID), a bad digest (RKV_EAUTH), a node id
 *     outside the join list or a version we do not speak (RKV_EPROTO), a
 *     frame that does not decode (RKV_EMALFORMED) or a frame over the size
 *     limit: the connection is closed and the cause logged; the node
 *     carries on;
 *   - a Welcome whose digest does not prove the secret (RKV_EAUTH), or any
 *     other frame on a dialed connection: the dialer closes it (logged)
 *     and redials after the backoff;
 *   - a Hello that would change a member's known client address without a
 *     cluster secret: accepted, but the address is kept (logged), because
 *     without a secret any local process can claim to be a member;
 *   - more than peers_pending_max connections without an accepted Hello:
 *     a new one is closed on accept; a connection whose Hello is not
 *     accepted within RKV_NODE_PEER_HELLO_TIMEOUT_MS is closed; both are
 *     logged at a limited rate;
 *   - a Raft message whose sender id is not the member that sent the
 *     Hello, or (in rkv_node__replica_step()) whose term is impossibly far
 *     ahead: dropped, counted and logged at a limited rate;
 *   - a message for a range this node does not have (a right-hand range
 *     whose split has not applied here yet): dropped; the leader resends
 *     once the split has created the replica.
 * A node without a cluster id that receives a Hello carrying one adopts it
 * and bootstraps the first range (rkv_node__bootstrap()), which is how the
 * members learn of `rangekv init`.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "node/sha256.h"

/* Dial failures between WARN messages about one peer. */
#define TRANSPORT_WARN_EVERY 20

void rkv_node__auth_digest(const char *secret,
                           const uint8_t nonce[RKV_NODE_NONCE_LEN],
                           uint64_t node_id, uint8_t digest[32])
{
    static const char label[] = "rangekv-peer-auth-v2";
    uint8_t buf[sizeof(label) + RKV_NODE_NONCE_LEN + 8 + 1024];
    size_t secret_len;
    size_t len = 0;

    if (secret == NULL) {
        memset(digest, 0, 32);
        return;
    }
    secret_len = RKV_MIN(strlen(secret), 1024);
    memcpy(buf, label, sizeof(label));
    len += sizeof(label);
    memcpy(buf + len, nonce, RKV_NODE_NONCE_LEN);
    len += RKV_NODE_NONCE_LEN;
    rkv_put_be64(buf + len, node_id);
    len += 8;
    memcpy(buf + len, secret, secret_len);
    len += secret_len;
    rkv_node__sha256(buf, len, digest);
}

/* Parses "a.b.c.d:port" into an IPv4 socket address. */
static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    char host[RKV_NODE_ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    char *end;
    long port;

    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return RKV_ECONFIG;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        return RKV_ECONFIG;
    }
    return uv_ip4_addr(host, (int)port, sa) == 0 ? 0 : RKV_ECONFIG;
}

/* Binds and listens on addr; fills advertise (when empty) with the bound
 * address. Shared with the client RPC server. */
int rkv_node__listen(uv_loop_t *loop, uv_tcp_t *tcp, const char *addr,
                     char advertise[RKV_NODE_ADDR_MAX],
                     uv_connection_cb connection_cb)
{
    struct sockaddr_in sa;
    struct sockaddr_in bound;
    int bound_len = sizeof(bound);
    char host[32];
    int rv;

    rv = parse_addr(addr, &sa);
    if (rv != 0) {
        return rv;
    }
    rv = uv_tcp_init(loop, tcp);
    if (rv != 0) {
        return rv;
    }
    rv = uv_tcp_bind(tcp, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)tcp, 1024, connection_cb);
    }
    if (rv == 0) {
        rv = uv_tcp_getsockname(tcp, (struct sockaddr *)&bound, &bound_len);
    }
    if (rv != 0) {
        return rv;
    }
    if (advertise[0] == '\0') {
        uv_ip4_name(&bound, host, sizeof(host));
        snprintf(advertise, RKV_NODE_ADDR_MAX, "%s:%u", host,
                 (unsigned)ntohs(bound.sin_port));
    }
    return 0;
}

/* ---- inbound ------------------------------------------------------------ */

/* Rejections are logged at WARN the first time and every
 * TRANSPORT_WARN_EVERY-th time after, at DEBUG otherwise, because a
 * rejected peer keeps redialing. */
static enum rkv_log_level peer_in_reject_level(struct rkv_node *node)
{
    return node->n_rejected++ % TRANSPORT_WARN_EVERY == 0 ? RKV_WARN
                                                          : RKV_DEBUG;
}

static int peer_in_check_hello(struct rkv_node__peer_in *in,
                               const Rkv__Peer__Hello *hello)
{
    struct rkv_node *node = in->node;
    uint8_t expected[32];
    enum rkv_log_level level;

    if (hello->version != RKV_NODE_PEER_PROTOCOL_VERSION ||
        hello->node_id == 0 || hello->node_id > node->n_peers ||
        hello->node_id == node->node_id || !hello->has_nonce ||
        hello->nonce.len != RKV_NODE_NONCE_LEN) {
        level = peer_in_reject_level(node);
        RKV_LOG(level, "rejected peer error=invalid hello version=%u peer=%llu",
                (unsigned)hello->version, (unsigned long long)hello->node_id);
        return RKV_EPROTO;
    }
    /* Once initialized, a node accepts only members of its own cluster: a
     * Hello without a cluster id comes from a member that has not learned
     * of `rangekv init` yet, which learns it from our own Hello instead. */
    if (node->cluster_id != 0 && hello->cluster_id == 0) {
        level = peer_in_reject_level(node);
        RKV_LOG(level == RKV_WARN ? RKV_INFO : level,
                "rejected peer error=not initialized yet, it learns the "
                "cluster id from this node's Hello peer=%llu rejections=%llu",
                (unsigned long long)hello->node_id,
                (unsigned long long)node->n_rejected);
        return RKV_ECLUSTERID;
    }
    if (node->cluster_id != 0 && hello->cluster_id != node->cluster_id) {
        level = peer_in_reject_level(node);
        RKV_LOG(level,
                "rejected peer error=another cluster peer=%llu cluster=%llu "
                "ours=%llu rejections=%llu",
                (unsigned long long)hello->node_id,
                (unsigned long long)hello->cluster_id,
                (unsigned long long)node->cluster_id,
                (unsigned long long)node->n_rejected);
        return RKV_ECLUSTERID;
    }
    if (node->cluster_secret != NULL) {
        rkv_node__auth_digest(node->cluster_secret, in->nonce, hello->node_id,
                              expected);
        if (!hello->has_auth_digest || hello->auth_digest.len != 32 ||
            !rkv_node__digest_equal(hello->auth_digest.data, expected, 32)) {
            level = peer_in_reject_level(node);
            RKV_LOG(level,
                    "rejected peer error=cluster secret mismatch peer=%llu "
                    "rejections=%llu",
                    (unsigned long long)hello->node_id,
                    (unsigned long long)node->n_rejected);
            return RKV_EAUTH;
        }
    }
    return 0;
}

/* Stores the client address a member sent in its Hello. Without a cluster
 * secret any local process can send a Hello naming a member, so only an
 * authenticated Hello may replace an address already known; the first one
 * is taken either way, because nothing else supplies it. */
static void peer_in_update_client_addr(struct rkv_node__peer_in *in,
                                       struct rkv_node__peer *peer,
                                       const char *client_addr)
{
    struct rkv_node *node = in->node;

    if (strcmp(peer->client_addr, client_addr) == 0) {
        return;
    }
    if (peer->client_addr[0] != '\0' && node->cluster_secret == NULL) {
        RKV_LOG(peer_in_reject_level(node),
                "kept the known client address of a peer: without "
                "--cluster-secret a Hello cannot prove who sent it peer=%llu "
                "known=%s sent=%s rejections=%llu",
                (unsigned long long)peer->node_id, peer->client_addr,
                client_addr, (unsigned long long)node->n_rejected);
        return;
    }
    snprintf(peer->client_addr, sizeof(peer->client_addr), "%s", client_addr);
}

/* Replies to an accepted Hello with the digest that proves this node knows the
 * secret, over the dialer's nonce. */
static int peer_in_send_welcome(struct rkv_node__peer_in *in,
                                const uint8_t nonce[RKV_NODE_NONCE_LEN])
{
    struct rkv_node *node = in->node;
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Welcome welcome = RKV__PEER__WELCOME__INIT;
    uint8_t digest[32];

    if (node->cluster_secret != NULL) {
        rkv_node__auth_digest(node->cluster_secret, nonce, node->node_id,
                              digest);
        welcome.has_auth_digest = true;
        welcome.auth_digest.data = digest;
        welcome.auth_digest.len = sizeof(digest);
    }
    frame.welcome = &welcome;
    return rkv_node__conn_send_message(&in->conn, &frame);
}

static int peer_in_hello(struct rkv_node__peer_in *in,
                         const Rkv__Peer__Hello *hello)
{
    struct rkv_node *node = in->node;
    struct rkv_node__peer *peer;
    int rv;

    rv = peer_in_check_hello(in, hello);
    if (rv != 0) {
        return rv;
    }
    rv = peer_in_send_welcome(in, hello->nonce.data);
    if (rv != 0) {
        return rv;
    }
    in->node_id = hello->node_id;
    node->n_peers_pending--;
    peer = &node->peers[hello->node_id - 1];
    peer_in_update_client_addr(in, peer, hello->client_addr);
    RKV_LOG(RKV_DEBUG, "accepted peer peer=%llu cluster=%llu",
            (unsigned long long)hello->node_id,
            (unsigned long long)hello->cluster_id);
    rkv_node__wake_ranges_of(node, hello->node_id);

    if (node->cluster_id == 0 && hello->cluster_id != 0) {
        RKV_LOG(RKV_INFO, "joining cluster cluster=%llu from peer=%llu",
                (unsigned long long)hello->cluster_id,
                (unsigned long long)hello->node_id);
        rv = rkv_node__bootstrap(node, hello->cluster_id);
        if (rv != 0) {
            RKV_LOG(RKV_ERROR, "joining cluster failed cluster=%llu error=%s",
                    (unsigned long long)hello->cluster_id, rkv_strerror(rv));
            return rv;
        }
    }
    return 0;
}

static void peer_in_step(struct rkv_node__peer_in *in,
                         const RkvRaft__Message *msg)
{
    struct rkv_node *node = in->node;

    if (msg->to != node->node_id) {
        RKV_LOG(RKV_DEBUG, "dropped message for another node to=%llu",
                (unsigned long long)msg->to);
        return;
    }
    /* Raft replica ids are node ids, so a member only sends its own
     * messages; another sender id is forged. */
    if (msg->from != in->node_id) {
        node->n_raft_rejected++;
        RKV_LOG(node->n_raft_rejected % TRANSPORT_WARN_EVERY == 1 ? RKV_WARN
                                                                  : RKV_DEBUG,
                "dropped message with a forged sender range=%llu peer=%llu "
                "from=%llu dropped=%llu",
                (unsigned long long)msg->group_id,
                (unsigned long long)in->node_id, (unsigned long long)msg->from,
                (unsigned long long)node->n_raft_rejected);
        return;
    }
    rkv_node__deliver_raft(node, msg);
}

static int peer_in_frame_cb(struct rkv_node__conn *conn, const uint8_t *payload,
                            size_t payload_len)
{
    struct rkv_node__peer_in *in = conn->data;
    Rkv__Peer__Frame *frame;
    int rv = 0;

    frame = rkv__peer__frame__unpack(NULL, payload_len, payload);
    if (frame == NULL) {
        enum rkv_log_level level = rkv_node__io_malformed_level(in->conn.io);

        RKV_LOG(level,
                "closing peer connection error=malformed frame peer=%llu "
                "bytes=%zu malformed=%llu",
                (unsigned long long)in->node_id, payload_len,
                (unsigned long long)in->conn.io->n_malformed);
        return RKV_EMALFORMED;
    }
    if (in->node_id == 0) {
        rv =
            frame->hello != NULL ? peer_in_hello(in, frame->hello) : RKV_EPROTO;
        if (frame->hello == NULL) {
            enum rkv_log_level level =
                rkv_node__io_malformed_level(in->conn.io);

            RKV_LOG(level,
                    "closing peer connection error=no hello "
                    "malformed=%llu",
                    (unsigned long long)in->conn.io->n_malformed);
        }
        rkv__peer__frame__free_unpacked(frame, NULL);
        return rv;
    }
    in->node->peers[in->node_id - 1].last_heard_ms = rkv_monotonic_ms();
    for (size_t i = 0; i < frame->n_heartbeats; i++) {
        in->node->peers[in->node_id - 1].writes_blocked =
            frame->heartbeats[i]->writes_blocked;
    }
    for (size_t i = 0; i < frame->n_messages; i++) {
        peer_in_step(in, frame->messages[i]);
    }
    for (size_t i = 0; i < frame->n_quiesces; i++) {
        rkv_node__quiesce_recv(in->node, in->node_id, frame->quiesces[i]);
    }
    for (size_t i = 0; i < frame->n_proposes; i++) {
        rkv_node__iprop_recv(in->node, in->node_id, frame->proposes[i]);
    }
    for (size_t i = 0; i < frame->n_propose_results; i++) {
        rkv_node__iprop_recv_result(in->node, frame->propose_results[i]);
    }
    rkv__peer__frame__free_unpacked(frame, NULL);
    return 0;
}

static void peer_in_close_cb(struct rkv_node__conn *conn)
{
    struct rkv_node__peer_in *in = conn->data;
    struct rkv_node *node = in->node;

    if (in->node_id == 0) {
        node->n_peers_pending--;
    }
    if (in->prev != NULL) {
        in->prev->next = in->next;
    } else {
        node->peers_in = in->next;
    }
    if (in->next != NULL) {
        in->next->prev = in->prev;
    }
    rkv_free(in);
}

static const struct rkv_node__conn_ops peer_in_ops = {
    .frame_cb = peer_in_frame_cb,
    .close_cb = peer_in_close_cb,
};

/* Sends the Challenge that the dialer's Hello must answer, with a fresh
 * random nonce. */
static int peer_in_send_challenge(struct rkv_node__peer_in *in)
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Challenge challenge = RKV__PEER__CHALLENGE__INIT;
    ssize_t n;

    n = getrandom(in->nonce, sizeof(in->nonce), 0);
    if (n != (ssize_t)sizeof(in->nonce)) {
        return n < 0 ? -errno : -EIO;
    }
    challenge.nonce.data = in->nonce;
    challenge.nonce.len = sizeof(in->nonce);
    frame.challenge = &challenge;
    return rkv_node__conn_send_message(&in->conn, &frame);
}

static void peer_listener_cb(uv_stream_t *server, int status)
{
    struct rkv_node *node = server->data;
    struct rkv_node__peer_in *in;
    int rv;

    if (status != 0) {
        RKV_LOG(RKV_WARN, "accepting peer failed error=%s",
                uv_strerror(status));
        return;
    }
    in = rkv_calloc(1, sizeof(*in));
    if (in == NULL) {
        RKV_LOG(RKV_WARN, "accepting peer failed error=%s",
                rkv_strerror(-ENOMEM));
        return;
    }
    in->node = node;
    in->accepted_ms = rkv_monotonic_ms();
    rv = rkv_node__conn_init(&in->conn, &node->io, &peer_in_ops, in, "peer",
                             RKV_NODE_PEER_FRAME_MAX, RKV_NODE_PEER_OUT_MAX);
    if (rv != 0) {
        rkv_free(in);
        return;
    }
    node->n_peers_pending++;
    in->next = node->peers_in;
    if (node->peers_in != NULL) {
        node->peers_in->prev = in;
    }
    node->peers_in = in;
    rv = uv_accept(server, (uv_stream_t *)&in->conn.tcp);
    if (rv == 0) {
        rv = rkv_node__conn_start(&in->conn);
    }
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "accepting peer failed error=%s", rkv_strerror(rv));
        rkv_node__conn_close(&in->conn);
        return;
    }
    /* Accepted and closed at once, so the backlog does not fill up. */
    if (node->n_peers_pending > node->peers_pending_max) {
        enum rkv_log_level level = rkv_node__refused_level(node);

        RKV_LOG(level,
                "closing connection kind=peer error=more than %u peer "
                "connections without a Hello refused=%llu",
                (unsigned)node->peers_pending_max,
                (unsigned long long)node->n_conns_refused);
        rkv_node__conn_close(&in->conn);
        return;
    }
    rv = peer_in_send_challenge(in);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "accepting peer failed error=%s", rkv_strerror(rv));
        rkv_node__conn_close(&in->conn);
    }
}

static void peer_log_dial_failure(struct rkv_node__peer *peer, int status);

void rkv_node__transport_close_silent(struct rkv_node *node, uint64_t now_ms)
{
    for (struct rkv_node__peer_in *in = node->peers_in; in != NULL;
         in = in->next) {
        enum rkv_log_level level;

        if (in->node_id != 0 || in->conn.closing ||
            now_ms < in->accepted_ms + RKV_NODE_PEER_HELLO_TIMEOUT_MS) {
            continue;
        }
        /* RKV_LOG may evaluate its level twice. */
        level = rkv_node__refused_level(node);
        RKV_LOG(level,
                "closing connection kind=peer error=no Hello within %u ms "
                "refused=%llu",
                (unsigned)RKV_NODE_PEER_HELLO_TIMEOUT_MS,
                (unsigned long long)node->n_conns_refused);
        rkv_node__conn_close(&in->conn);
    }
    for (size_t i = 0; i < node->n_peers; i++) {
        struct rkv_node__peer *peer = &node->peers[i];

        if (peer->out == NULL || peer->out->closing || peer->connected ||
            now_ms < peer->dial_ms + RKV_NODE_PEER_HELLO_TIMEOUT_MS) {
            continue;
        }
        /* A peer address that accepts and then stays silent (a stuck
         * process, or another program on that port) would otherwise hold
         * the only dial to that member for ever. The close redials. */
        peer_log_dial_failure(peer, UV_ETIMEDOUT);
        rkv_node__conn_close(peer->out);
    }
}

enum rkv_log_level rkv_node__refused_level(struct rkv_node *node)
{
    return node->n_conns_refused++ % RKV_NODE_REFUSED_WARN_EVERY == 0
               ? RKV_WARN
               : RKV_DEBUG;
}

/* ---- outbound ----------------------------------------------------------- */

static void peer_dial(struct rkv_node__peer *peer);

static void peer_retry_cb(uv_timer_t *timer)
{
    peer_dial(timer->data);
}

static void peer_schedule_dial(struct rkv_node__peer *peer)
{
    if (peer->node->stopping) {
        return;
    }
    uv_timer_start(&peer->retry_timer, peer_retry_cb, peer->backoff_ms, 0);
    peer->backoff_ms =
        RKV_MIN(peer->backoff_ms * 2, (uint64_t)RKV_NODE_RECONNECT_MAX_MS);
}

static int peer_send_hello(struct rkv_node__peer *peer,
                           const uint8_t nonce[RKV_NODE_NONCE_LEN]);

/* Marks peer's connection ready for messages once its Hello is sent. */
static void peer_out_ready(struct rkv_node__peer *peer)
{
    peer->connected = true;
    peer->connected_ms = rkv_monotonic_ms();
    RKV_LOG(peer->n_failures >= TRANSPORT_WARN_EVERY ? RKV_INFO : RKV_DEBUG,
            "connected to peer peer=%llu addr=%s after failures=%u",
            (unsigned long long)peer->node_id, peer->peer_addr,
            peer->n_failures);
    peer->n_failures = 0;
    rkv_node__wake_ranges_of(peer->node, peer->node_id);
}

/* Returns 0 when the Welcome proves that the peer knows our secret (its
 * digest over the nonce of our Hello), or RKV_EAUTH. Without a secret
 * there is nothing to prove. */
static int peer_out_check_welcome(struct rkv_node__peer *peer,
                                  const Rkv__Peer__Welcome *welcome)
{
    const char *secret = peer->node->cluster_secret;
    uint8_t expected[32];

    if (secret == NULL) {
        return 0;
    }
    rkv_node__auth_digest(secret, peer->nonce, peer->node_id, expected);
    if (!welcome->has_auth_digest || welcome->auth_digest.len != 32 ||
        !rkv_node__digest_equal(welcome->auth_digest.data, expected, 32)) {
        return RKV_EAUTH;
    }
    return 0;
}

/* The accepting side sends two frames on a dialed connection: the
 * Challenge, which our Hello answers, then the Welcome, which proves it
 * knows the secret. Anything else closes the connection. */
static int peer_out_frame_cb(struct rkv_node__conn *conn,
                             const uint8_t *payload, size_t payload_len)
{
    struct rkv_node__peer *peer = conn->data;
    Rkv__Peer__Frame *frame;
    bool ready = false;
    int rv = RKV_EPROTO;

    frame = rkv__peer__frame__unpack(NULL, payload_len, payload);
    if (frame == NULL) {
        rv = RKV_EMALFORMED;
    } else if (!peer->hello_sent && frame->challenge != NULL &&
               frame->challenge->nonce.len == RKV_NODE_NONCE_LEN) {
        rv = peer_send_hello(peer, frame->challenge->nonce.data);
    } else if (peer->hello_sent && !peer->connected && frame->welcome != NULL) {
        rv = peer_out_check_welcome(peer, frame->welcome);
        ready = rv == 0;
    }
    if (frame != NULL) {
        rkv__peer__frame__free_unpacked(frame, NULL);
    }
    if (rv != 0) {
        RKV_LOG(RKV_WARN,
                "closing connection to peer error=%s: expected its "
                "challenge, then a welcome that proves the cluster secret "
                "peer=%llu bytes=%zu",
                rkv_strerror(rv), (unsigned long long)peer->node_id,
                payload_len);
        return rv;
    }
    if (ready) {
        peer_out_ready(peer);
    }
    return 0;
}

static void peer_out_close_cb(struct rkv_node__conn *conn)
{
    struct rkv_node__peer *peer = conn->data;

    rkv_free(conn);
    peer->out = NULL;
    if (peer->connected) {
        bool lived = rkv_monotonic_ms() >=
                     peer->connected_ms + RKV_NODE_RECONNECT_MAX_MS;

        /* A peer that closes right after the Hello (it rejected us, see its
         * log) is redialed with a growing backoff, not at once. */
        RKV_LOG(lived ? RKV_INFO : RKV_DEBUG,
                "lost connection to peer peer=%llu",
                (unsigned long long)peer->node_id);
        if (lived) {
            peer->backoff_ms = RKV_NODE_RECONNECT_MIN_MS;
        }
    }
    peer->connected = false;
    peer->hello_sent = false;
    peer_schedule_dial(peer);
}

static const struct rkv_node__conn_ops peer_out_ops = {
    .frame_cb = peer_out_frame_cb,
    .close_cb = peer_out_close_cb,
};

static int peer_send_hello(struct rkv_node__peer *peer,
                           const uint8_t nonce[RKV_NODE_NONCE_LEN])
{
    struct rkv_node *node = peer->node;
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Hello hello = RKV__PEER__HELLO__INIT;
    uint8_t digest[32];
    ssize_t n;
    int rv;

    n = getrandom(peer->nonce, sizeof(peer->nonce), 0);
    if (n != (ssize_t)sizeof(peer->nonce)) {
        return n < 0 ? -errno : -EIO;
    }
    hello.has_nonce = true;
    hello.nonce.data = peer->nonce;
    hello.nonce.len = sizeof(peer->nonce);
    hello.version = RKV_NODE_PEER_PROTOCOL_VERSION;
    hello.node_id = node->node_id;
    hello.cluster_id = node->cluster_id;
    hello.peer_addr = node->advertise_addr;
    hello.client_addr = node->advertise_client_addr;
    if (node->cluster_secret != NULL) {
        rkv_node__auth_digest(node->cluster_secret, nonce, node->node_id,
                              digest);
        hello.has_auth_digest = true;
        hello.auth_digest.data = digest;
        hello.auth_digest.len = sizeof(digest);
    }
    frame.hello = &hello;
    rv = rkv_node__conn_send_message(peer->out, &frame);
    if (rv == 0) {
        peer->hello_sent = true;
    }
    return rv;
}

static void peer_log_dial_failure(struct rkv_node__peer *peer, int status)
{
    peer->n_failures++;
    if (peer->n_failures % TRANSPORT_WARN_EVERY == 0) {
        RKV_LOG(RKV_WARN,
                "connecting to peer keeps failing peer=%llu addr=%s "
                "failures=%u error=%s",
                (unsigned long long)peer->node_id, peer->peer_addr,
                peer->n_failures, uv_strerror(status));
    } else {
        RKV_LOG(RKV_DEBUG,
                "connecting to peer failed, retrying peer=%llu addr=%s "
                "error=%s",
                (unsigned long long)peer->node_id, peer->peer_addr,
                uv_strerror(status));
    }
}

static void peer_connect_cb(uv_connect_t *req, int status)
{
    struct rkv_node__peer *peer = req->data;
    int rv;

    if (status == UV_ECANCELED) {
        return;
    }
    if (status != 0) {
        peer_log_dial_failure(peer, status);
        rkv_node__conn_close(peer->out);
        return;
    }
    /* The Hello goes out once the peer's Challenge arrives
     * (peer_out_frame_cb()). */
    rv = rkv_node__conn_start(peer->out);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "starting peer connection failed peer=%llu error=%s",
                (unsigned long long)peer->node_id, rkv_strerror(rv));
        rkv_node__conn_close(peer->out);
    }
}

static void peer_dial(struct rkv_node__peer *peer)
{
    struct rkv_node *node = peer->node;
    struct sockaddr_in sa;
    int rv;

    if (node->stopping || peer->out != NULL) {
        return;
    }
    if (parse_addr(peer->peer_addr, &sa) != 0) {
        RKV_LOG(RKV_ERROR, "invalid peer address peer=%llu addr=%s",
                (unsigned long long)peer->node_id, peer->peer_addr);
        return;
    }
    peer->out = rkv_malloc(sizeof(*peer->out));
    if (peer->out == NULL) {
        peer_schedule_dial(peer);
        return;
    }
    rv = rkv_node__conn_init(peer->out, &node->io, &peer_out_ops, peer, "peer",
                             RKV_NODE_PEER_FRAME_MAX, RKV_NODE_PEER_OUT_MAX);
    if (rv != 0) {
        rkv_free(peer->out);
        peer->out = NULL;
        peer_schedule_dial(peer);
        return;
    }
    peer->dial_ms = rkv_monotonic_ms();
    peer->connect_req.data = peer;
    rv = uv_tcp_connect(&peer->connect_req, &peer->out->tcp,
                        (const struct sockaddr *)&sa, peer_connect_cb);
    if (rv != 0) {
        peer_log_dial_failure(peer, rv);
        rkv_node__conn_close(peer->out);
    }
}

static void tcp_send_raft(void *data, const RkvRaft__Message *msg)
{
    struct rkv_node *node = data;
    struct rkv_node__peer *peer;
    int rv;

    if (msg->to == 0 || msg->to > node->n_peers || msg->to == node->node_id) {
        RKV_LOG(RKV_WARN, "dropped message to unknown node range=%llu to=%llu",
                (unsigned long long)msg->group_id, (unsigned long long)msg->to);
        return;
    }
    peer = &node->peers[msg->to - 1];
    if (peer->out == NULL || !peer->connected) {
        peer->n_dropped++;
        return;
    }
    rv = rkv_node__conn_append_field(peer->out, 1, msg);
    if (rv != 0) {
        peer->n_dropped++;
        RKV_TRACEF("dropped message range=%llu to=%llu error=%s",
                   (unsigned long long)msg->group_id,
                   (unsigned long long)msg->to, rkv_strerror(rv));
    }
}

static int tcp_send_propose(void *data, uint64_t to_node_id,
                            const Rkv__Peer__Propose *propose)
{
    struct rkv_node *node = data;
    struct rkv_node__peer *peer;

    if (to_node_id == 0 || to_node_id > node->n_peers ||
        to_node_id == node->node_id) {
        return -EINVAL;
    }
    peer = &node->peers[to_node_id - 1];
    if (peer->out == NULL || !peer->connected) {
        return RKV_EUNAVAILABLE;
    }
    return rkv_node__conn_append_field(peer->out, 3, propose);
}

static void tcp_send_propose_result(void *data, uint64_t to_node_id,
                                    const Rkv__Peer__ProposeResult *result)
{
    struct rkv_node *node = data;
    struct rkv_node__peer *peer;

    if (to_node_id == 0 || to_node_id > node->n_peers ||
        to_node_id == node->node_id) {
        return;
    }
    peer = &node->peers[to_node_id - 1];
    if (peer->out == NULL || !peer->connected) {
        return;
    }
    rkv_node__conn_append_field(peer->out, 4, result);
}

static void tcp_send_quiesce(void *data, uint64_t to_node_id,
                             const Rkv__Peer__Quiesce *quiesce)
{
    struct rkv_node *node = data;
    struct rkv_node__peer *peer;

    if (to_node_id == 0 || to_node_id > node->n_peers ||
        to_node_id == node->node_id) {
        return;
    }
    peer = &node->peers[to_node_id - 1];
    if (peer->out != NULL && peer->connected) {
        rkv_node__conn_append_field(peer->out, 5, quiesce);
    }
}

void rkv_node__heartbeat_fill(struct rkv_node *node, uint64_t tick,
                              Rkv__Peer__Heartbeat *heartbeat)
{
    rkv__peer__heartbeat__init(heartbeat);
    heartbeat->tick = tick;
    heartbeat->has_writes_blocked = true;
    heartbeat->writes_blocked = rkv_node__writes_blocked(node) != 0;
}

void rkv_node__send_heartbeats(struct rkv_node *node, uint64_t tick)
{
    Rkv__Peer__Heartbeat heartbeat;

    rkv_node__heartbeat_fill(node, tick, &heartbeat);
    for (size_t i = 0; i < node->n_peers; i++) {
        struct rkv_node__peer *peer = &node->peers[i];

        if (peer->out != NULL && peer->connected) {
            rkv_node__conn_append_field(peer->out, 6, &heartbeat);
        }
    }
}

static bool tcp_peer_is_live(void *data, uint64_t node_id, uint64_t within_ms)
{
    struct rkv_node *node = data;

    if (node_id == node->node_id) {
        return true;
    }
    if (node_id == 0 || node_id > node->n_peers) {
        return false;
    }
    return rkv_monotonic_ms() <
           node->peers[node_id - 1].last_heard_ms + within_ms;
}

const struct rkv_node__transport_ops rkv_node__tcp_ops = {
    .send_raft = tcp_send_raft,
    .send_propose = tcp_send_propose,
    .send_propose_result = tcp_send_propose_result,
    .send_quiesce = tcp_send_quiesce,
    .peer_is_live = tcp_peer_is_live,
};

void rkv_node__transport_reset(struct rkv_node *node)
{
    for (size_t i = 0; i < node->n_peers; i++) {
        struct rkv_node__peer *peer = &node->peers[i];

        peer->backoff_ms = RKV_NODE_RECONNECT_MIN_MS;
        if (peer->out != NULL && (peer->connected || peer->hello_sent)) {
            /* The close callback redials with the new Hello; this is no
             * lost connection worth logging. */
            peer->connected = false;
            rkv_node__conn_close(peer->out);
        }
    }
}

int rkv_node__transport_start(struct rkv_node *node)
{
    int rv;

    node->peer_listener.data = node;
    rv = rkv_node__listen(&node->loop, &node->peer_listener, node->listen_addr,
                          node->advertise_addr, peer_listener_cb);
    node->peer_listener.data = node;
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < node->n_peers; i++) {
        struct rkv_node__peer *peer = &node->peers[i];

        uv_timer_init(&node->loop, &peer->retry_timer);
        peer->retry_timer.data = peer;
        peer->backoff_ms = RKV_NODE_RECONNECT_MIN_MS;
        if (peer->node_id != node->node_id) {
            peer_dial(peer);
        }
    }
    return 0;
}

void rkv_node__transport_close(struct rkv_node *node)
{
    /* loop is set once uv_tcp_init ran on the listener. */
    if (node->peer_listener.loop != NULL &&
        !uv_is_closing((uv_handle_t *)&node->peer_listener)) {
        uv_close((uv_handle_t *)&node->peer_listener, NULL);
    }
    for (struct rkv_node__peer_in *in = node->peers_in; in != NULL;
         in = in->next) {
        rkv_node__conn_close(&in->conn);
    }
    for (size_t i = 0; i < node->n_peers; i++) {
        struct rkv_node__peer *peer = &node->peers[i];

        if (peer->retry_timer.loop != NULL &&
            !uv_is_closing((uv_handle_t *)&peer->retry_timer)) {
            uv_timer_stop(&peer->retry_timer);
            uv_close((uv_handle_t *)&peer->retry_timer, NULL);
        }
        if (peer->out != NULL) {
            rkv_node__conn_close(peer->out);
        }
    }
}
