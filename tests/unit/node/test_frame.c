/*
 * Frame reading and writing of node/conn.c, and the handshake digest of
 * node/sha256.c, without a network: bytes are fed straight into a
 * connection's frame reader, and output buffers are read back.
 */
#include <string.h>

#include <uv.h>

#include "node/conn.h"
#include "node/rpc.pb-c.h"
#include "node/sha256.h"
#include "tests/lib/test.h"

/* Most frames one test collects. */
#define FRAMES_MAX 16

struct fixture {
    uv_loop_t loop;
    struct rkv_node__io io;
    struct rkv_node__conn conn;
    size_t n_frames;
    size_t frame_lens[FRAMES_MAX];
    uint8_t frames[FRAMES_MAX][64];
    int frame_rv; /* what frame_cb returns */
    bool closed;
};

static int collect_frame_cb(struct rkv_node__conn *conn, const uint8_t *payload,
                            size_t payload_len)
{
    struct fixture *f = conn->data;

    ASSERT_UINT_LT(f->n_frames, FRAMES_MAX);
    f->frame_lens[f->n_frames] = payload_len;
    memcpy(f->frames[f->n_frames], payload, RKV_MIN(payload_len, 64));
    f->n_frames++;
    return f->frame_rv;
}

static void note_close_cb(struct rkv_node__conn *conn)
{
    struct fixture *f = conn->data;

    f->closed = true;
}

static const struct rkv_node__conn_ops test_ops = {
    .frame_cb = collect_frame_cb,
    .close_cb = note_close_cb,
};

static void setup(struct fixture *f, uint32_t frame_max)
{
    memset(f, 0, sizeof(*f));
    ASSERT_OK(uv_loop_init(&f->loop));
    rkv_node__io_init(&f->io, &f->loop);
    ASSERT_OK(rkv_node__conn_init(&f->conn, &f->io, &test_ops, f, "test",
                                  frame_max, 1024 * 1024));
}

static void teardown(struct fixture *f)
{
    rkv_node__conn_close(&f->conn);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_TRUE(f->closed);
    ASSERT_OK(uv_loop_close(&f->loop));
}

TEST(frame, whole_frames_in_one_read)
{
    /* Two frames arriving in one read are delivered in order. */
    static const uint8_t stream[] = {0,   0, 0, 3, 'a', 'b',
                                     'c', 0, 0, 0, 1,   'z'};
    struct fixture f;

    setup(&f, 100);
    ASSERT_OK(rkv_node__conn_feed(&f.conn, stream, sizeof(stream)));
    ASSERT_UINT_EQ(f.n_frames, 2);
    ASSERT_MEM_EQ(f.frames[0], f.frame_lens[0], "abc", 3);
    ASSERT_MEM_EQ(f.frames[1], f.frame_lens[1], "z", 1);
    teardown(&f);
}

TEST(frame, byte_by_byte)
{
    /* A frame split at every byte, header included, is reassembled. */
    static const uint8_t stream[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    struct fixture f;

    setup(&f, 100);
    for (size_t i = 0; i < sizeof(stream); i++) {
        ASSERT_OK(rkv_node__conn_feed(&f.conn, &stream[i], 1));
    }
    ASSERT_UINT_EQ(f.n_frames, 1);
    ASSERT_MEM_EQ(f.frames[0], f.frame_lens[0], "hello", 5);
    teardown(&f);
}

TEST(frame, length_limits)
{
    /* Lengths at the boundaries: 0 is malformed, frame_max is accepted,
     * frame_max + 1 and 0xFFFFFFFF are too large and are refused from the
     * header alone, before any payload arrives or is allocated. */
    static const struct {
        uint8_t header[4];
        int expected_rv;
    } cases[] = {
        {{0, 0, 0, 0}, RKV_EMALFORMED},
        {{0, 0, 0, 8}, 0},
        {{0, 0, 0, 9}, RKV_ETOOLARGE},
        {{0xff, 0xff, 0xff, 0xff}, RKV_ETOOLARGE},
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        struct fixture f;

        setup(&f, 8);
        ASSERT_INT_EQ(rkv_node__conn_feed(&f.conn, cases[i].header, 4),
                      cases[i].expected_rv);
        ASSERT_UINT_EQ(f.n_frames, 0);
        teardown(&f);
    }
}

TEST(frame, callback_error_stops_feed)
{
    /* An error from frame_cb (a payload that does not decode) is returned
     * and the frames after it are not delivered. */
    static const uint8_t stream[] = {0, 0, 0, 1, 'x', 0, 0, 0, 1, 'y'};
    struct fixture f;

    setup(&f, 100);
    f.frame_rv = RKV_EMALFORMED;
    ASSERT_INT_EQ(rkv_node__conn_feed(&f.conn, stream, sizeof(stream)),
                  RKV_EMALFORMED);
    ASSERT_UINT_EQ(f.n_frames, 1);
    teardown(&f);
}

TEST(frame, batched_fields_decode)
{
    /* Messages appended as repeated fields form one frame that decodes as
     * a message with that repeated field (here RangesResponse.nodes). */
    struct fixture f;
    Rkv__Rpc__NodeInfo info = RKV__RPC__NODE_INFO__INIT;
    Rkv__Rpc__RangesResponse *decoded;
    uint32_t frame_len;

    setup(&f, 1024);
    info.client_addr = "127.0.0.1:1";
    info.peer_addr = "127.0.0.1:2";
    for (uint64_t id = 1; id <= 3; id++) {
        info.node_id = id;
        ASSERT_OK(rkv_node__conn_append_field(&f.conn, 2, &info));
    }
    rkv_node__conn_close_frame(&f.conn);
    ASSERT_UINT_GT(f.conn.out_len, 4);
    frame_len = rkv_get_be32(f.conn.out);
    ASSERT_UINT_EQ(frame_len + 4, f.conn.out_len);
    decoded =
        rkv__rpc__ranges_response__unpack(NULL, frame_len, f.conn.out + 4);
    ASSERT_TRUE(decoded != NULL);
    ASSERT_UINT_EQ(decoded->n_nodes, 3);
    ASSERT_UINT_EQ(decoded->nodes[2]->node_id, 3);
    ASSERT_STR_EQ(decoded->nodes[0]->peer_addr, "127.0.0.1:2");
    rkv__rpc__ranges_response__free_unpacked(decoded, NULL);
    teardown(&f);
}

TEST(frame, output_limit)
{
    /* Output past out_max is refused with RKV_EBUSY instead of growing. */
    struct fixture f;
    Rkv__Rpc__NodeInfo info = RKV__RPC__NODE_INFO__INIT;
    int rv = 0;

    memset(&f, 0, sizeof(f));
    ASSERT_OK(uv_loop_init(&f.loop));
    rkv_node__io_init(&f.io, &f.loop);
    ASSERT_OK(
        rkv_node__conn_init(&f.conn, &f.io, &test_ops, &f, "test", 1024, 100));
    info.client_addr = "127.0.0.1:1";
    info.peer_addr = "127.0.0.1:2";
    for (int i = 0; i < 20 && rv == 0; i++) {
        rv = rkv_node__conn_send_message(&f.conn, &info);
    }
    ASSERT_INT_EQ(rv, RKV_EBUSY);
    ASSERT_UINT_LE(f.conn.out_len, 100);
    teardown(&f);
}

TEST(sha256, known_digests)
{
    /* The FIPS 180-4 examples "abc" and the empty string, and a two-block
     * message of 56 bytes that forces a second padding block. */
    static const struct {
        const char *input;
        uint8_t digest[32];
    } cases[] = {
        {"abc",
         {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
          0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
          0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad}},
        {"", {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
              0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
              0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         {0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8, 0xe5, 0xc0, 0x26,
          0x93, 0x0c, 0x3e, 0x60, 0x39, 0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff,
          0x21, 0x67, 0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1}},
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        uint8_t digest[RKV_NODE_SHA256_LEN];

        rkv_node__sha256(cases[i].input, strlen(cases[i].input), digest);
        ASSERT_MEM_EQ(digest, sizeof(digest), cases[i].digest, 32);
    }
}

TEST(sha256, digest_compare)
{
    /* Equal digests compare equal; a difference in the last byte does
     * not. */
    uint8_t a[32] = {0};
    uint8_t b[32] = {0};

    ASSERT_TRUE(rkv_node__digest_equal(a, b, 32));
    b[31] = 1;
    ASSERT_FALSE(rkv_node__digest_equal(a, b, 32));
}
