/*
 * Encoding of range descriptors and of the commands Raft entries carry,
 * with the size limits checked before a command is proposed.
 *
 * Limits: a key is 1 to RKV_RANGE_KEY_MAX bytes, a value at most the
 * store's value_max, a batch at most batch_ops_max operations, and any
 * encoded command at most batch_bytes_max bytes. Each failure returns
 * RKV_ETOOLARGE (or -EINVAL for an empty key or batch) and writes the size
 * and the limit into errmsg.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

bool rkv_range_desc_contains_key(const struct rkv_range_desc *desc,
                                 const void *key, size_t key_len)
{
    if (rkv_range__key_cmp(key, key_len, desc->start_key, desc->start_key_len) <
        0) {
        return false;
    }
    if (desc->end_key_len == 0) {
        return true;
    }
    return rkv_range__key_cmp(key, key_len, desc->end_key, desc->end_key_len) <
           0;
}

bool rkv_range__desc_is_valid(const struct rkv_range_desc *desc)
{
    if (desc->range_id == 0) {
        return false;
    }
    if (desc->start_key_len > RKV_RANGE_KEY_MAX ||
        desc->end_key_len > RKV_RANGE_KEY_MAX) {
        return false;
    }
    if (desc->n_replicas > RKV_RANGE_REPLICAS_MAX) {
        return false;
    }
    /* Only the first range starts at the keyspace start. */
    if ((desc->start_key_len == 0) != (desc->range_id == RKV_RANGE_ID_FIRST)) {
        return false;
    }
    if (desc->end_key_len == 0) {
        return true;
    }
    return rkv_range__key_cmp(desc->start_key, desc->start_key_len,
                              desc->end_key, desc->end_key_len) < 0;
}

void rkv_range__desc_to_msg(const struct rkv_range_desc *desc,
                            RkvRange__RangeDescriptor *msg,
                            RkvRange__Replica *replicas,
                            RkvRange__Replica **replica_ptrs)
{
    rkv_range__range_descriptor__init(msg);
    msg->range_id = desc->range_id;
    msg->generation = desc->generation;
    msg->start_key.data = (uint8_t *)desc->start_key;
    msg->start_key.len = desc->start_key_len;
    msg->end_key.data = (uint8_t *)desc->end_key;
    msg->end_key.len = desc->end_key_len;
    for (size_t i = 0; i < desc->n_replicas; i++) {
        rkv_range__replica__init(&replicas[i]);
        replicas[i].node_id = desc->replicas[i].node_id;
        replicas[i].replica_id = desc->replicas[i].replica_id;
        replicas[i].learner = desc->replicas[i].learner;
        replica_ptrs[i] = &replicas[i];
    }
    msg->n_replicas = desc->n_replicas;
    msg->replicas = replica_ptrs;
}

int rkv_range__desc_from_msg(const RkvRange__RangeDescriptor *msg,
                             struct rkv_range_desc *out)
{
    if (msg->start_key.len > RKV_RANGE_KEY_MAX ||
        msg->end_key.len > RKV_RANGE_KEY_MAX ||
        msg->n_replicas > RKV_RANGE_REPLICAS_MAX) {
        return RKV_EMALFORMED;
    }
    memset(out, 0, sizeof(*out));
    out->range_id = msg->range_id;
    out->generation = msg->generation;
    if (msg->start_key.len > 0) {
        memcpy(out->start_key, msg->start_key.data, msg->start_key.len);
    }
    out->start_key_len = msg->start_key.len;
    if (msg->end_key.len > 0) {
        memcpy(out->end_key, msg->end_key.data, msg->end_key.len);
    }
    out->end_key_len = msg->end_key.len;
    for (size_t i = 0; i < msg->n_replicas; i++) {
        out->replicas[i].node_id = msg->replicas[i]->node_id;
        out->replicas[i].replica_id = msg->replicas[i]->replica_id;
        out->replicas[i].learner = msg->replicas[i]->learner;
    }
    out->n_replicas = msg->n_replicas;
    if (!rkv_range__desc_is_valid(out)) {
        return RKV_EMALFORMED;
    }
    return 0;
}

int rkv_range__desc_encode(const struct rkv_range_desc *desc, uint8_t **buf,
                           size_t *len)
{
    RkvRange__RangeDescriptor msg;
    RkvRange__Replica replicas[RKV_RANGE_REPLICAS_MAX];
    RkvRange__Replica *replica_ptrs[RKV_RANGE_REPLICAS_MAX];

    assert(rkv_range__desc_is_valid(desc));

    rkv_range__desc_to_msg(desc, &msg, replicas, replica_ptrs);
    *len = rkv_range__range_descriptor__get_packed_size(&msg);
    *buf = rkv_malloc(*len > 0 ? *len : 1);
    if (*buf == NULL) {
        return -ENOMEM;
    }
    rkv_range__range_descriptor__pack(&msg, *buf);
    return 0;
}

int rkv_range__desc_decode(const uint8_t *buf, size_t len,
                           struct rkv_range_desc *out)
{
    RkvRange__RangeDescriptor *msg;
    int rv;

    msg = rkv_range__range_descriptor__unpack(NULL, len, buf);
    if (msg == NULL) {
        return RKV_EMALFORMED;
    }
    rv = rkv_range__desc_from_msg(msg, out);
    rkv_range__range_descriptor__free_unpacked(msg, NULL);
    return rv;
}

/* ---- commands ----------------------------------------------------------- */

static void codec_errmsg(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void codec_errmsg(char *errmsg, const char *fmt, ...)
{
    va_list args;

    if (errmsg == NULL) {
        return;
    }
    va_start(args, fmt);
    vsnprintf(errmsg, RKV_RANGE_ERRMSG_SIZE, fmt, args);
    va_end(args);
}

static int codec_check_key(size_t key_len, char *errmsg)
{
    if (key_len == 0) {
        codec_errmsg(errmsg, "key is empty");
        return -EINVAL;
    }
    if (key_len > RKV_RANGE_KEY_MAX) {
        codec_errmsg(errmsg, "key of %zu bytes is over the limit of %d bytes",
                     key_len, RKV_RANGE_KEY_MAX);
        return RKV_ETOOLARGE;
    }
    return 0;
}

static int codec_check_value(const struct rkv_range_store *store,
                             size_t value_len, char *errmsg)
{
    if (value_len > store->value_max) {
        codec_errmsg(errmsg, "value of %zu bytes is over the limit of %u bytes",
                     value_len, store->value_max);
        return RKV_ETOOLARGE;
    }
    return 0;
}

/* Packs cmd into a new buffer after checking the command size limit. */
static int codec_pack(const struct rkv_range_store *store,
                      const RkvRange__Command *cmd, uint8_t **buf_out,
                      size_t *len_out, char *errmsg)
{
    size_t len = rkv_range__command__get_packed_size(cmd);
    uint8_t *buf;

    if (store != NULL && len > store->batch_bytes_max) {
        codec_errmsg(errmsg,
                     "command of %zu bytes is over the limit of %u bytes", len,
                     store->batch_bytes_max);
        return RKV_ETOOLARGE;
    }
    buf = rkv_malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        return -ENOMEM;
    }
    rkv_range__command__pack(cmd, buf);
    *buf_out = buf;
    *len_out = len;
    return 0;
}

int rkv_range_encode_put(const struct rkv_range_store *store, const void *key,
                         size_t key_len, const void *value, size_t value_len,
                         uint8_t **buf_out, size_t *len_out, char *errmsg)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__Put put = RKV_RANGE__PUT__INIT;
    int rv;

    assert(store != NULL);

    rv = codec_check_key(key_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_value(store, value_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    put.key.data = (uint8_t *)key;
    put.key.len = key_len;
    put.value.data = (uint8_t *)value;
    put.value.len = value_len;
    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_PUT;
    cmd.put = &put;
    return codec_pack(store, &cmd, buf_out, len_out, errmsg);
}

int rkv_range_encode_delete(const struct rkv_range_store *store,
                            const void *key, size_t key_len, uint8_t **buf_out,
                            size_t *len_out, char *errmsg)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__Delete del = RKV_RANGE__DELETE__INIT;
    int rv;

    assert(store != NULL);

    rv = codec_check_key(key_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    del.key.data = (uint8_t *)key;
    del.key.len = key_len;
    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_DELETE;
    cmd.delete_ = &del;
    return codec_pack(store, &cmd, buf_out, len_out, errmsg);
}

int rkv_range_encode_cas(const struct rkv_range_store *store, const void *key,
                         size_t key_len, const void *expected,
                         size_t expected_len, const void *new_value,
                         size_t new_value_len, uint8_t **buf_out,
                         size_t *len_out, char *errmsg)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__Cas cas = RKV_RANGE__CAS__INIT;
    int rv;

    assert(store != NULL);

    rv = codec_check_key(key_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv =
        codec_check_value(store, new_value != NULL ? new_value_len : 0, errmsg);
    if (rv != 0) {
        return rv;
    }
    cas.key.data = (uint8_t *)key;
    cas.key.len = key_len;
    if (expected != NULL) {
        cas.has_expected_value = true;
        cas.expected_value.data = (uint8_t *)expected;
        cas.expected_value.len = expected_len;
    }
    if (new_value != NULL) {
        cas.has_new_value = true;
        cas.new_value.data = (uint8_t *)new_value;
        cas.new_value.len = new_value_len;
    }
    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_CAS;
    cmd.cas = &cas;
    return codec_pack(store, &cmd, buf_out, len_out, errmsg);
}

static int codec_check_batch(const struct rkv_range_store *store,
                             const struct rkv_range_op *ops, size_t n_ops,
                             char *errmsg)
{
    int rv;

    if (n_ops == 0) {
        codec_errmsg(errmsg, "batch is empty");
        return -EINVAL;
    }
    if (n_ops > store->batch_ops_max) {
        codec_errmsg(errmsg, "batch of %zu operations is over the limit of %u",
                     n_ops, store->batch_ops_max);
        return RKV_ETOOLARGE;
    }
    for (size_t i = 0; i < n_ops; i++) {
        rv = codec_check_key(ops[i].key_len, errmsg);
        if (rv == 0 && !ops[i].is_delete) {
            rv = codec_check_value(store, ops[i].value_len, errmsg);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int rkv_range_encode_batch(const struct rkv_range_store *store,
                           const struct rkv_range_op *ops, size_t n_ops,
                           uint8_t **buf_out, size_t *len_out, char *errmsg)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__Batch batch = RKV_RANGE__BATCH__INIT;
    RkvRange__BatchOp *msgs;
    RkvRange__BatchOp **ptrs;
    int rv;

    assert(store != NULL);

    rv = codec_check_batch(store, ops, n_ops, errmsg);
    if (rv != 0) {
        return rv;
    }
    msgs = rkv_calloc(n_ops, sizeof(*msgs));
    ptrs = rkv_calloc(n_ops, sizeof(*ptrs));
    if (msgs == NULL || ptrs == NULL) {
        rv = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n_ops; i++) {
        rkv_range__batch_op__init(&msgs[i]);
        msgs[i].is_delete = ops[i].is_delete;
        msgs[i].key.data = (uint8_t *)ops[i].key;
        msgs[i].key.len = ops[i].key_len;
        if (!ops[i].is_delete) {
            msgs[i].has_value = true;
            msgs[i].value.data = (uint8_t *)ops[i].value;
            msgs[i].value.len = ops[i].value_len;
        }
        ptrs[i] = &msgs[i];
    }
    batch.ops = ptrs;
    batch.n_ops = n_ops;
    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_BATCH;
    cmd.batch = &batch;
    rv = codec_pack(store, &cmd, buf_out, len_out, errmsg);
out:
    rkv_free(ptrs);
    rkv_free(msgs);
    return rv;
}

int rkv_range_encode_split(const struct rkv_range_store *store,
                           const struct rkv_range_desc *desc,
                           const void *split_key, size_t split_key_len,
                           uint64_t new_range_id, uint8_t **buf_out,
                           size_t *len_out, char *errmsg)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__Split split = RKV_RANGE__SPLIT__INIT;
    int rv;

    assert(store != NULL);
    assert(rkv_range__desc_is_valid(desc));

    rv = codec_check_key(split_key_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (new_range_id <= RKV_RANGE_ID_FIRST || new_range_id == desc->range_id) {
        codec_errmsg(errmsg, "new range id %llu is invalid",
                     (unsigned long long)new_range_id);
        return -EINVAL;
    }
    if (!rkv_range_desc_contains_key(desc, split_key, split_key_len) ||
        rkv_range__key_cmp(split_key, split_key_len, desc->start_key,
                           desc->start_key_len) == 0) {
        codec_errmsg(errmsg, "split key is not strictly inside range %llu",
                     (unsigned long long)desc->range_id);
        return -EINVAL;
    }
    split.range_id = desc->range_id;
    split.generation = desc->generation;
    split.split_key.data = (uint8_t *)split_key;
    split.split_key.len = split_key_len;
    split.new_range_id = new_range_id;
    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_SPLIT;
    cmd.split = &split;
    return codec_pack(store, &cmd, buf_out, len_out, errmsg);
}

int rkv_range_encode_alloc_range_id(uint8_t **buf_out, size_t *len_out)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__AllocRangeId alloc = RKV_RANGE__ALLOC_RANGE_ID__INIT;

    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_ALLOC_RANGE_ID;
    cmd.alloc_range_id = &alloc;
    return codec_pack(NULL, &cmd, buf_out, len_out, NULL);
}

int rkv_range_encode_meta_update(const struct rkv_range_desc *left,
                                 const struct rkv_range_desc *right,
                                 uint8_t **buf_out, size_t *len_out)
{
    RkvRange__Command cmd = RKV_RANGE__COMMAND__INIT;
    RkvRange__MetaUpdate update = RKV_RANGE__META_UPDATE__INIT;
    RkvRange__RangeDescriptor msgs[2];
    RkvRange__RangeDescriptor *ptrs[2] = {&msgs[0], &msgs[1]};
    RkvRange__Replica replicas[2][RKV_RANGE_REPLICAS_MAX];
    RkvRange__Replica *replica_ptrs[2][RKV_RANGE_REPLICAS_MAX];

    assert(rkv_range__desc_is_valid(left));
    assert(right == NULL || rkv_range__desc_is_valid(right));

    rkv_range__desc_to_msg(left, &msgs[0], replicas[0], replica_ptrs[0]);
    if (right != NULL) {
        rkv_range__desc_to_msg(right, &msgs[1], replicas[1], replica_ptrs[1]);
    }
    update.descriptors = ptrs;
    update.n_descriptors = right != NULL ? 2 : 1;
    cmd.cmd_case = RKV_RANGE__COMMAND__CMD_META_UPDATE;
    cmd.meta_update = &update;
    return codec_pack(NULL, &cmd, buf_out, len_out, NULL);
}
