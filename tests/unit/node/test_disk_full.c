/*
 * A node whose store runs out of space: writes stop with RKV_ENOSPACE (a
 * full disk) or RKV_EMAPFULL (the LMDB map at --map-size-max), reads go on,
 * nothing acknowledged is lost, and writes resume once space is back.
 *
 * The full disk is real: a small tmpfs mounted in the test's folder, which
 * needs root. Without root, or when mounting fails, the binary prints why
 * and exits 77, which ctest counts as skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/common.h"
#include "rangekv/rangekv.h"
#include "tests/lib/node_rpc.h"
#include "tests/lib/test.h"

/* Size of the tmpfs that contains the store. */
#define TMPFS_SIZE "24m"
/* Bytes of the filler file written on the tmpfs before the node starts,
 * deleted later to free space. */
#define FILLER_BYTES (6u * 1024 * 1024)
/* Value size of the filling writes. */
#define VALUE_BYTES (16u * 1024)
/* Upper bound on filling writes: far more than the tmpfs or map can hold. */
#define FILL_WRITES_MAX 4000
/* Time one routed request may take, retries included. */
#define REQUEST_TIMEOUT_MS 10000
/* Time for writes to resume after space is freed. */
#define RESUME_TIMEOUT_MS 20000

/* Skips the whole binary (exit 77) when the test cannot mount a tmpfs. */
__attribute__((constructor)) static void require_tmpfs(void)
{
    char dir[] = "/tmp/rkv-tmpfs-probe-XXXXXX";

    if (getuid() != 0) {
        printf("skipped: mounting a tmpfs needs root\n");
        fflush(stdout);
        _exit(77);
    }
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        printf("skipped: creating a private mount namespace failed: %s\n",
               strerror(errno));
        fflush(stdout);
        _exit(77);
    }
    if (mkdtemp(dir) == NULL) {
        printf("skipped: creating %s failed: %s\n", dir, strerror(errno));
        fflush(stdout);
        _exit(77);
    }
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
        printf("skipped: mounting a tmpfs on %s failed: %s\n", dir,
               strerror(errno));
        rmdir(dir);
        fflush(stdout);
        _exit(77);
    }
    umount(dir);
    rmdir(dir);
}

/* Mounts a tmpfs of the given size on dir inside a mount namespace of this
 * test's process, so that the mount goes away with the process even when
 * an assertion ends it early. */
static void mount_tmpfs(const char *dir, const char *size)
{
    char options[64];

    ASSERT_INT_EQ(unshare(CLONE_NEWNS), 0);
    ASSERT_INT_EQ(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    snprintf(options, sizeof(options), "size=%s", size);
    ASSERT_INT_EQ(mount("tmpfs", dir, "tmpfs", 0, options), 0);
}

struct fixture {
    char mnt[512];
    char store[600];
    char filler[600];
    char peer_addr[RKV_NODE_ADDR_MAX];
    const char *join[1];
    char client_addrs[1][RKV_TEST_ADDR_MAX];
    struct rkv_node *node;
    uint64_t map_size_max;
    char *value;    /* VALUE_BYTES of one character, NUL-terminated */
    size_t n_acked; /* keys 0 .. n_acked-1 were acknowledged */
    bool acked[FILL_WRITES_MAX];
};

static void start_node(struct fixture *f)
{
    struct rkv_node_config config = {0};
    char peer[RKV_NODE_ADDR_MAX];
    char errmsg[256];

    config.store_dir = f->store;
    config.listen_addr = f->peer_addr;
    config.join = f->join;
    config.n_join = 1;
    config.tick_ms = 20;
    config.map_size_max = f->map_size_max;
    if (rkv_node_start(&config, &f->node, errmsg, sizeof(errmsg)) != 0) {
        rkv_test_fail(__FILE__, __LINE__, "starting the node failed: %s",
                      errmsg);
    }
    rkv_node_addresses(f->node, peer, f->client_addrs[0]);
}

static void stop_node(struct fixture *f)
{
    rkv_node_stop(f->node);
    f->node = NULL;
}

static void key_of(size_t i, char key[32])
{
    snprintf(key, 32, "fill-%06zu", i);
}

/* Sends one put; returns its error and copies its message. */
static int put_once(struct fixture *f, const char *key, char *message,
                    size_t message_cap)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    int rv;

    put.key.data = (uint8_t *)key;
    put.key.len = strlen(key);
    put.value.data = (uint8_t *)f->value;
    put.value.len = VALUE_BYTES;
    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_PUT;
    request.put = &put;
    response =
        rkv_test_rpc_route(f->client_addrs, 1, &request, REQUEST_TIMEOUT_MS);
    if (response == NULL) {
        snprintf(message, message_cap, "timed out");
        return RKV_ETIMEOUT;
    }
    rv = response->error;
    snprintf(message, message_cap, "%s",
             response->error_message != NULL ? response->error_message : "");
    rkv__rpc__response__free_unpacked(response, NULL);
    return rv;
}

/* Writes keys until a put fails with want_rv; records the acknowledged
 * ones. Returns the refused put's message in message. */
static void fill_until(struct fixture *f, int want_rv, char *message,
                       size_t message_cap)
{
    for (size_t i = 0; i < FILL_WRITES_MAX; i++) {
        char key[32];
        int rv;

        key_of(i, key);
        rv = put_once(f, key, message, message_cap);
        if (rv == 0) {
            f->acked[i] = true;
            f->n_acked = i + 1;
            continue;
        }
        if (rv == want_rv) {
            return;
        }
        /* The write that ran into the full store first is neither
         * acknowledged nor refused: it waits in the stalled batch until its
         * deadline. Anything else is a failure. */
        if (rv != RKV_ETIMEOUT && rv != RKV_EUNKNOWN) {
            rkv_test_fail(__FILE__, __LINE__,
                          "put %zu failed with %s (%s), expected %s", i,
                          rkv_errname(rv), message, rkv_errname(want_rv));
        }
        f->n_acked = i + 1;
    }
    rkv_test_fail(__FILE__, __LINE__, "%d puts never filled the store",
                  FILL_WRITES_MAX);
}

/* Checks that every acknowledged key reads back with its value. */
static void check_acked(struct fixture *f)
{
    char *value = malloc(VALUE_BYTES + 1);
    size_t n_checked = 0;

    ASSERT_TRUE(value != NULL);
    for (size_t i = 0; i < f->n_acked; i++) {
        char key[32];
        bool found = false;

        if (!f->acked[i]) {
            continue;
        }
        key_of(i, key);
        ASSERT_INT_EQ(rkv_test_get(f->client_addrs, 1, key, &found, value,
                                   VALUE_BYTES + 1, REQUEST_TIMEOUT_MS),
                      0);
        ASSERT_TRUE(found);
        ASSERT_STR_EQ(value, f->value);
        n_checked++;
    }
    ASSERT_UINT_GT(n_checked, 10);
    free(value);
}

/* Puts one new key until it succeeds or RESUME_TIMEOUT_MS passes. */
static void wait_writes_resume(struct fixture *f, const char *key)
{
    uint64_t deadline_ms = rkv_monotonic_ms() + RESUME_TIMEOUT_MS;
    char message[1024];
    int rv;

    for (;;) {
        rv = put_once(f, key, message, sizeof(message));
        if (rv == 0 || rkv_monotonic_ms() > deadline_ms) {
            break;
        }
        usleep(100 * 1000);
    }
    ASSERT_INT_EQ(rv, 0);
}

static void setup(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", rkv_test_tmpdir());
    snprintf(f->store, sizeof(f->store), "%s/store", f->mnt);
    snprintf(f->filler, sizeof(f->filler), "%s/filler", f->mnt);
    snprintf(f->peer_addr, sizeof(f->peer_addr), "127.0.0.1:%u",
             (unsigned)rkv_test_pick_port());
    f->join[0] = f->peer_addr;
    f->value = malloc(VALUE_BYTES + 1);
    ASSERT_TRUE(f->value != NULL);
    memset(f->value, 'v', VALUE_BYTES);
    f->value[VALUE_BYTES] = '\0';
    ASSERT_INT_EQ(mkdir(f->mnt, 0755), 0);
}

/* Writes n_bytes (a multiple of 4 KiB) to the filler file. */
static void write_filler(struct fixture *f, size_t n_bytes)
{
    static const char block[4096];
    int fd = open(f->filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    ASSERT_INT_GE(fd, 0);
    for (size_t done = 0; done < n_bytes; done += sizeof(block)) {
        ASSERT_INT_EQ(write(fd, block, sizeof(block)), (int)sizeof(block));
    }
    ASSERT_INT_EQ(close(fd), 0);
}

TEST(disk_full, writes_stop_then_resume)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char message[1024];

    ASSERT_TRUE(f != NULL);
    setup(f);
    mount_tmpfs(f->mnt, TMPFS_SIZE);
    write_filler(f, FILLER_BYTES);
    start_node(f);
    ASSERT_INT_EQ(rkv_node_init(f->node), 0);

    fill_until(f, RKV_ENOSPACE, message, sizeof(message));
    /* The refusal names the store that is full. */
    ASSERT_TRUE(strstr(message, f->store) != NULL);
    ASSERT_TRUE(strstr(message, "disk is full") != NULL);
    /* Still full: a second write is refused at once as well. */
    ASSERT_INT_EQ(put_once(f, "refused", message, sizeof(message)),
                  RKV_ENOSPACE);
    check_acked(f);

    ASSERT_INT_EQ(unlink(f->filler), 0);
    wait_writes_resume(f, "after-space-freed");
    check_acked(f);

    /* Everything acknowledged is durable: it survives a restart. */
    stop_node(f);
    start_node(f);
    check_acked(f);
    stop_node(f);
    ASSERT_INT_EQ(umount(f->mnt), 0);
    free(f->value);
    free(f);
}

TEST(disk_full, map_limit_stops_writes)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char message[1024];

    ASSERT_TRUE(f != NULL);
    setup(f);
    snprintf(f->store, sizeof(f->store), "%s/store", rkv_test_tmpdir());
    f->map_size_max = 4u * 1024 * 1024;
    start_node(f);
    ASSERT_INT_EQ(rkv_node_init(f->node), 0);

    fill_until(f, RKV_EMAPFULL, message, sizeof(message));
    ASSERT_TRUE(strstr(message, f->store) != NULL);
    ASSERT_TRUE(strstr(message, "--map-size-max") != NULL);
    check_acked(f);

    /* Stopping while the writer retries drops only unacknowledged work;
     * a larger limit lets writes go on. */
    stop_node(f);
    f->map_size_max = 64u * 1024 * 1024;
    start_node(f);
    check_acked(f);
    wait_writes_resume(f, "after-limit-raised");
    check_acked(f);
    stop_node(f);
    free(f->value);
    free(f);
}

/* Sends a put of a big value with its own short deadline; returns its
 * error. */
static int put_big(struct fixture *f, const char *key, const char *value)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    int rv;

    put.key.data = (uint8_t *)key;
    put.key.len = strlen(key);
    put.value.data = (uint8_t *)value;
    put.value.len = strlen(value);
    request.id = 1;
    request.has_deadline_ms = true;
    request.deadline_ms = 1000;
    request.op_case = RKV__RPC__REQUEST__OP_PUT;
    request.put = &put;
    response =
        rkv_test_rpc_route(f->client_addrs, 1, &request, REQUEST_TIMEOUT_MS);
    if (response == NULL) {
        return RKV_ETIMEOUT;
    }
    rv = response->error;
    rkv__rpc__response__free_unpacked(response, NULL);
    return rv;
}

/* Starts a node on a tmpfs, acknowledges 20 small puts, leaves 512 KiB
 * above the reserve with the filler file, and sends a put of big_len bytes
 * that the reserve check admits but whose log entry alone needs more than
 * the space left, so that the commit itself fails with ENOSPC. */
static void stall_writer(struct fixture *f, const char *big)
{
    char message[1024];
    struct statvfs fs;
    uint64_t avail;
    uint64_t reserve;

    setup(f);
    mount_tmpfs(f->mnt, TMPFS_SIZE);
    start_node(f);
    ASSERT_INT_EQ(rkv_node_init(f->node), 0);
    for (size_t i = 0; i < 20; i++) {
        char key[32];

        key_of(i, key);
        ASSERT_INT_EQ(put_once(f, key, message, sizeof(message)), 0);
        f->acked[i] = true;
        f->n_acked = i + 1;
    }

    ASSERT_INT_EQ(statvfs(f->mnt, &fs), 0);
    avail = (uint64_t)fs.f_bavail * fs.f_frsize;
    reserve = (uint64_t)fs.f_blocks * fs.f_frsize / 16;
    ASSERT_UINT_GT(avail, reserve + (2u << 20));
    write_filler(f, (size_t)(avail - reserve - (512u << 10)) & ~(size_t)4095);

    /* Neither acknowledged nor refused: it waits in the stalled batch. */
    ASSERT_INT_NE(put_big(f, "big", big), 0);
    ASSERT_INT_EQ(put_once(f, "refused", message, sizeof(message)),
                  RKV_ENOSPACE);
    ASSERT_TRUE(strstr(message, f->store) != NULL);
}

/* The writer keeps the failed batch, new writes are refused, reads go on,
 * and the batch commits once space is freed. */
TEST(disk_full, failed_commit_is_retried)
{
    struct fixture *f = calloc(1, sizeof(*f));
    size_t big_len = 3u * 1024 * 1024;
    char *big = malloc(big_len + 1);
    char *got = malloc(big_len + 1);
    bool found = false;

    ASSERT_TRUE(f != NULL);
    ASSERT_TRUE(big != NULL);
    ASSERT_TRUE(got != NULL);
    memset(big, 'b', big_len);
    big[big_len] = '\0';
    stall_writer(f, big);
    check_acked(f);

    ASSERT_INT_EQ(unlink(f->filler), 0);
    wait_writes_resume(f, "after-space-freed");
    check_acked(f);
    /* The stalled batch committed: the big value was written after all. */
    ASSERT_INT_EQ(rkv_test_get(f->client_addrs, 1, "big", &found, got,
                               big_len + 1, REQUEST_TIMEOUT_MS),
                  0);
    ASSERT_TRUE(found);
    ASSERT_STR_EQ(got, big);

    stop_node(f);
    start_node(f);
    check_acked(f);
    stop_node(f);
    ASSERT_INT_EQ(umount(f->mnt), 0);
    free(got);
    free(big);
    free(f->value);
    free(f);
}

/* Stopping a node whose writer retries returns, drops only the
 * unacknowledged batch, and a restart once space is freed has every
 * acknowledged write. */
TEST(disk_full, stop_while_stalled)
{
    struct fixture *f = calloc(1, sizeof(*f));
    size_t big_len = 3u * 1024 * 1024;
    char *big = malloc(big_len + 1);

    ASSERT_TRUE(f != NULL);
    ASSERT_TRUE(big != NULL);
    memset(big, 'b', big_len);
    big[big_len] = '\0';
    stall_writer(f, big);

    stop_node(f);
    ASSERT_INT_EQ(unlink(f->filler), 0);
    start_node(f);
    check_acked(f);
    wait_writes_resume(f, "after-restart");
    stop_node(f);
    ASSERT_INT_EQ(umount(f->mnt), 0);
    free(big);
    free(f->value);
    free(f);
}

/* ---- a follower whose disk fills ---------------------------------------- */

/* Size of the tmpfs of the follower in the three-node test. */
#define FOLLOWER_TMPFS_SIZE "16m"
/* Puts of VALUE_BYTES in the three-node test: about 19 MiB of values, more
 * than the follower's tmpfs can contain once the log doubles them. */
#define FOLLOWER_WRITES 1200

struct cluster {
    struct rkv_node *nodes[3];
    char stores[3][600];
    char peer_addrs[3][RKV_NODE_ADDR_MAX];
    const char *join[3];
    char client_addrs[3][RKV_TEST_ADDR_MAX];
    uint64_t map_size_max[3]; /* per node; 0: the default */
};

static void cluster_start_node(struct cluster *c, size_t i)
{
    struct rkv_node_config config = {0};
    char peer[RKV_NODE_ADDR_MAX];
    char errmsg[256];

    config.store_dir = c->stores[i];
    config.listen_addr = c->peer_addrs[i];
    config.join = c->join;
    config.n_join = 3;
    config.node_id = i + 1;
    config.tick_ms = 20;
    config.map_size_max = c->map_size_max[i];
    if (rkv_node_start(&config, &c->nodes[i], errmsg, sizeof(errmsg)) != 0) {
        rkv_test_fail(__FILE__, __LINE__, "starting node %zu failed: %s", i + 1,
                      errmsg);
    }
    rkv_node_addresses(c->nodes[i], peer, c->client_addrs[i]);
}

/* Returns node i's status counter of applied entries, and whether it
 * leads a range. */
static uint64_t applied_of(struct cluster *c, size_t i, bool *leads)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__StatusRequest status = RKV__RPC__STATUS_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    uint64_t applied;

    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_STATUS;
    request.status = &status;
    response = rkv_test_rpc_call_addr(c->client_addrs[i], &request);
    ASSERT_TRUE(response != NULL);
    ASSERT_INT_EQ(response->error, 0);
    ASSERT_INT_EQ(response->result_case, RKV__RPC__RESPONSE__RESULT_STATUS);
    applied = response->status->n_entries_applied;
    if (leads != NULL) {
        *leads = response->status->n_leaders > 0;
    }
    rkv__rpc__response__free_unpacked(response, NULL);
    return applied;
}

/* A follower whose disk fills stalls without stopping, the other two go
 * on taking writes, and once its file system grows the follower catches
 * up and can form a quorum again. */
TEST(disk_full, follower_stalls_then_catches_up)
{
    struct cluster *c = calloc(1, sizeof(*c));
    char mnt[512];
    char *value = malloc(VALUE_BYTES + 1);
    uint64_t deadline_ms;
    bool leads = false;

    ASSERT_TRUE(c != NULL);
    ASSERT_TRUE(value != NULL);
    memset(value, 'f', VALUE_BYTES);
    value[VALUE_BYTES] = '\0';
    snprintf(mnt, sizeof(mnt), "%s/mnt", rkv_test_tmpdir());
    ASSERT_INT_EQ(mkdir(mnt, 0755), 0);
    mount_tmpfs(mnt, FOLLOWER_TMPFS_SIZE);
    for (size_t i = 0; i < 3; i++) {
        if (i == 2) {
            snprintf(c->stores[i], sizeof(c->stores[i]), "%s/node3", mnt);
        } else {
            snprintf(c->stores[i], sizeof(c->stores[i]), "%s/node%zu",
                     rkv_test_tmpdir(), i + 1);
        }
        snprintf(c->peer_addrs[i], sizeof(c->peer_addrs[i]), "127.0.0.1:%u",
                 (unsigned)rkv_test_pick_port());
        c->join[i] = c->peer_addrs[i];
    }
    /* Node 3 starts once nodes 1 and 2 elected a leader, so it follows. */
    cluster_start_node(c, 0);
    cluster_start_node(c, 1);
    ASSERT_OK(rkv_node_init(c->nodes[0]));
    ASSERT_OK(
        rkv_test_put(c->client_addrs, 2, "first", "1", REQUEST_TIMEOUT_MS));
    cluster_start_node(c, 2);

    for (size_t i = 0; i < FOLLOWER_WRITES; i++) {
        char key[32];

        key_of(i, key);
        ASSERT_OK(
            rkv_test_put(c->client_addrs, 2, key, value, REQUEST_TIMEOUT_MS));
    }
    applied_of(c, 2, &leads);
    ASSERT_FALSE(leads);
    /* The follower could not keep up: it is behind, and alive. */
    ASSERT_UINT_LT(applied_of(c, 2, NULL), applied_of(c, 0, NULL));

    ASSERT_INT_EQ(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=256m"), 0);
    deadline_ms = rkv_monotonic_ms() + RESUME_TIMEOUT_MS;
    while (applied_of(c, 2, NULL) < FOLLOWER_WRITES &&
           rkv_monotonic_ms() < deadline_ms) {
        usleep(100 * 1000);
    }
    ASSERT_UINT_GE(applied_of(c, 2, NULL), FOLLOWER_WRITES);

    /* Nodes 2 and 3 alone still serve every write made while node 3 was
     * full. */
    rkv_node_stop(c->nodes[0]);
    c->nodes[0] = NULL;
    for (size_t i = 0; i < FOLLOWER_WRITES; i += 97) {
        char key[32];
        char *got = malloc(VALUE_BYTES + 1);
        bool found = false;

        ASSERT_TRUE(got != NULL);
        key_of(i, key);
        ASSERT_OK(rkv_test_get(&c->client_addrs[1], 2, key, &found, got,
                               VALUE_BYTES + 1, REQUEST_TIMEOUT_MS));
        ASSERT_TRUE(found);
        ASSERT_STR_EQ(got, value);
        free(got);
    }
    ASSERT_OK(
        rkv_test_put(&c->client_addrs[1], 2, "after", "2", REQUEST_TIMEOUT_MS));
    rkv_node_stop(c->nodes[1]);
    rkv_node_stop(c->nodes[2]);
    ASSERT_INT_EQ(umount(mnt), 0);
    free(value);
    free(c);
}

/* Returns whether node i leads a range. */
static bool leads_of(struct cluster *c, size_t i)
{
    bool leads = false;

    applied_of(c, i, &leads);
    return leads;
}

/* Waits until one node leads the range; returns it. */
static size_t cluster_leader(struct cluster *c)
{
    for (int attempt = 0; attempt < 500; attempt++) {
        for (size_t i = 0; i < 3; i++) {
            if (c->nodes[i] != NULL && leads_of(c, i)) {
                return i;
            }
        }
        usleep(20 * 1000);
    }
    rkv_test_fail(__FILE__, __LINE__, "no leader was elected");
}

/* A leader whose map fills gives its leadership to a node with space, so
 * the range goes on taking writes. */
TEST(disk_full, full_leader_hands_over)
{
    struct cluster *c = calloc(1, sizeof(*c));
    char *value = malloc(VALUE_BYTES + 1);
    bool saw_full = false;
    size_t leader;

    ASSERT_TRUE(c != NULL);
    ASSERT_TRUE(value != NULL);
    memset(value, 'h', VALUE_BYTES);
    value[VALUE_BYTES] = '\0';
    for (size_t i = 0; i < 3; i++) {
        snprintf(c->stores[i], sizeof(c->stores[i]), "%s/node%zu",
                 rkv_test_tmpdir(), i + 1);
        snprintf(c->peer_addrs[i], sizeof(c->peer_addrs[i]), "127.0.0.1:%u",
                 (unsigned)rkv_test_pick_port());
        c->join[i] = c->peer_addrs[i];
    }
    c->map_size_max[0] = 4u * 1024 * 1024;
    for (size_t i = 0; i < 3; i++) {
        cluster_start_node(c, i);
    }
    ASSERT_OK(rkv_node_init(c->nodes[0]));
    ASSERT_OK(
        rkv_test_put(c->client_addrs, 3, "first", "1", REQUEST_TIMEOUT_MS));
    /* Restart other leaders until node 1, the one with a small map,
     * leads. */
    for (int round = 0; round < 30; round++) {
        leader = cluster_leader(c);
        if (leader == 0) {
            break;
        }
        rkv_node_stop(c->nodes[leader]);
        c->nodes[leader] = NULL;
        cluster_leader(c);
        cluster_start_node(c, leader);
    }
    ASSERT_TRUE(leads_of(c, 0));

    /* About 12 MiB of values through the cluster: more than node 1's map
     * can take. A put that node 1 rejects is retried until the range has
     * a leader with space. */
    for (size_t i = 0; i < 800; i++) {
        char key[32];
        int rv = RKV_EMAPFULL;

        key_of(i, key);
        for (int attempt = 0; attempt < 50 && rv == RKV_EMAPFULL; attempt++) {
            rv = rkv_test_put(c->client_addrs, 3, key, value,
                              REQUEST_TIMEOUT_MS);
            if (rv == RKV_EMAPFULL) {
                saw_full = true;
                usleep(100 * 1000);
            }
        }
        ASSERT_OK(rv);
    }
    ASSERT_TRUE(saw_full);
    ASSERT_FALSE(leads_of(c, 0));
    for (size_t i = 0; i < 3; i++) {
        rkv_node_stop(c->nodes[i]);
    }
    free(value);
    free(c);
}
