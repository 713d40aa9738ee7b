/*
 * Applying committed entries to a range: put, delete, compare-and-swap,
 * atomic batch, and the range 1 commands (range id allocation, meta
 * update). Splits are in range_split.c.
 *
 * Every apply runs inside the caller's LMDB write transaction and ends by
 * saving the applied state (index, term, stats), so the entry's effects and
 * the applied index commit together.
 *
 * A command that cannot take effect (a key outside the range, a stale
 * split, an entry that fails to decode) still counts as applied: its
 * failure goes to result->rv and the transaction goes on, because every
 * replica reaches the same verdict from the same state. Only storage
 * failures abort the transaction.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

void rkv_range_apply_result_free(struct rkv_range_apply_result *result)
{
    if (result == NULL) {
        return;
    }
    rkv_free(result->value);
    result->value = NULL;
    result->value_len = 0;
}

/* Reads a user key's current value; *found_out false when absent. */
static int apply_read(struct rkv_range__tx *tx, const uint8_t *stored_key,
                      size_t stored_key_len, MDB_val *value_out,
                      bool *found_out)
{
    int rv = rkv_range__get(tx, tx->store->dbi_data, stored_key, stored_key_len,
                            value_out);

    if (rv == RKV_ENOTFOUND) {
        *found_out = false;
        return 0;
    }
    *found_out = rv == 0;
    return rv;
}

/* Writes or deletes one user key and keeps stats exact. */
static int apply_write_key(struct rkv_range__tx *tx,
                           struct rkv_range_stats *stats, const uint8_t *key,
                           size_t key_len, bool is_delete, const uint8_t *value,
                           size_t value_len, bool *existed_out)
{
    uint8_t stored[RKV_RANGE__STORED_KEY_MAX];
    size_t stored_len = rkv_range__user_key(stored, key, key_len);
    MDB_val old;
    bool found;
    int rv;

    rv = apply_read(tx, stored, stored_len, &old, &found);
    if (rv != 0) {
        return rv;
    }
    if (found) {
        assert(stats->key_count > 0);
        assert(stats->value_bytes >= old.mv_size);
        stats->key_count--;
        stats->key_bytes -= key_len;
        stats->value_bytes -= old.mv_size;
    }
    if (existed_out != NULL) {
        *existed_out = found;
    }
    if (is_delete) {
        return found
                   ? rkv_range__del(tx, tx->store->dbi_data, stored, stored_len)
                   : 0;
    }
    stats->key_count++;
    stats->key_bytes += key_len;
    stats->value_bytes += value_len;
    return rkv_range__put(tx, tx->store->dbi_data, stored, stored_len, value,
                          value_len);
}

/* Checks a command's key against the range and this node's limits. */
static int apply_check_key(const struct rkv_range_desc *desc,
                           const ProtobufCBinaryData *key,
                           struct rkv_range_apply_result *result)
{
    if (key->len == 0 || key->len > RKV_RANGE_KEY_MAX) {
        return RKV_ETOOLARGE;
    }
    if (!rkv_range_desc_contains_key(desc, key->data, key->len)) {
        result->desc = *desc;
        return RKV_EKEYMISMATCH;
    }
    return 0;
}

static int apply_put(struct rkv_range__tx *tx,
                     const struct rkv_range_desc *desc,
                     struct rkv_range__applied *applied,
                     const RkvRange__Put *put,
                     struct rkv_range_apply_result *result)
{
    result->rv = apply_check_key(desc, &put->key, result);
    if (result->rv == 0 && put->value.len > tx->store->value_max) {
        result->rv = RKV_ETOOLARGE;
    }
    if (result->rv != 0) {
        return 0;
    }
    return apply_write_key(tx, &applied->stats, put->key.data, put->key.len,
                           false, put->value.data, put->value.len, NULL);
}

static int apply_delete(struct rkv_range__tx *tx,
                        const struct rkv_range_desc *desc,
                        struct rkv_range__applied *applied,
                        const RkvRange__Delete *del,
                        struct rkv_range_apply_result *result)
{
    result->rv = apply_check_key(desc, &del->key, result);
    if (result->rv != 0) {
        return 0;
    }
    return apply_write_key(tx, &applied->stats, del->key.data, del->key.len,
                           true, NULL, 0, &result->found);
}

static int apply_cas(struct rkv_range__tx *tx,
                     const struct rkv_range_desc *desc,
                     struct rkv_range__applied *applied,
                     const RkvRange__Cas *cas,
                     struct rkv_range_apply_result *result)
{
    uint8_t stored[RKV_RANGE__STORED_KEY_MAX];
    size_t stored_len;
    MDB_val current;
    bool found;
    bool matches;
    int rv;

    result->rv = apply_check_key(desc, &cas->key, result);
    if (result->rv == 0 && cas->has_new_value &&
        cas->new_value.len > tx->store->value_max) {
        result->rv = RKV_ETOOLARGE;
    }
    if (result->rv != 0) {
        return 0;
    }
    stored_len = rkv_range__user_key(stored, cas->key.data, cas->key.len);
    rv = apply_read(tx, stored, stored_len, &current, &found);
    if (rv != 0) {
        return rv;
    }
    if (!cas->has_expected_value) {
        matches = !found;
    } else {
        matches = found && rkv_range__key_cmp(current.mv_data, current.mv_size,
                                              cas->expected_value.data,
                                              cas->expected_value.len) == 0;
    }
    if (!matches) {
        result->found = false;
        if (found) {
            result->value = rkv_memdup(current.mv_data, current.mv_size);
            if (result->value == NULL) {
                return -ENOMEM;
            }
            result->value_len = current.mv_size;
        }
        return 0;
    }
    result->found = true;
    if (!cas->has_new_value && !found) {
        return 0;
    }
    return apply_write_key(tx, &applied->stats, cas->key.data, cas->key.len,
                           !cas->has_new_value, cas->new_value.data,
                           cas->new_value.len, NULL);
}

static int apply_batch(struct rkv_range__tx *tx,
                       const struct rkv_range_desc *desc,
                       struct rkv_range__applied *applied,
                       const RkvRange__Batch *batch,
                       struct rkv_range_apply_result *result)
{
    int rv;

    if (batch->n_ops == 0 || batch->n_ops > tx->store->batch_ops_max) {
        result->rv = RKV_ETOOLARGE;
        return 0;
    }
    /* Check every key first: a batch is all or nothing. */
    for (size_t i = 0; i < batch->n_ops; i++) {
        const RkvRange__BatchOp *op = batch->ops[i];

        result->rv = apply_check_key(desc, &op->key, result);
        if (result->rv == 0 && !op->is_delete &&
            op->value.len > tx->store->value_max) {
            result->rv = RKV_ETOOLARGE;
        }
        if (result->rv != 0) {
            return 0;
        }
    }
    for (size_t i = 0; i < batch->n_ops; i++) {
        const RkvRange__BatchOp *op = batch->ops[i];

        rv =
            apply_write_key(tx, &applied->stats, op->key.data, op->key.len,
                            op->is_delete, op->value.data, op->value.len, NULL);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int apply_alloc_range_id(struct rkv_range__tx *tx,
                                const struct rkv_range_desc *desc,
                                struct rkv_range_apply_result *result)
{
    if (desc->range_id != RKV_RANGE_ID_FIRST) {
        result->rv = -EINVAL;
        return 0;
    }
    return rkv_range__counter_next(tx, &result->new_range_id);
}

static int apply_meta_update(struct rkv_range__tx *tx,
                             const struct rkv_range_desc *desc,
                             const RkvRange__MetaUpdate *update,
                             struct rkv_range_apply_result *result)
{
    struct rkv_range_desc meta;
    int rv;

    if (desc->range_id != RKV_RANGE_ID_FIRST) {
        result->rv = -EINVAL;
        return 0;
    }
    for (size_t i = 0; i < update->n_descriptors; i++) {
        if (rkv_range__desc_from_msg(update->descriptors[i], &meta) != 0) {
            result->rv = RKV_EMALFORMED;
            return 0;
        }
        rv = rkv_range__meta_write(tx, &meta);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int apply_command(struct rkv_range__tx *tx, struct rkv_range_desc *desc,
                         struct rkv_range__applied *applied,
                         const RkvRange__Command *cmd,
                         struct rkv_range_apply_result *result)
{
    switch (cmd->cmd_case) {
    case RKV_RANGE__COMMAND__CMD_PUT:
        result->kind = RKV_RANGE_CMD_PUT;
        return apply_put(tx, desc, applied, cmd->put, result);
    case RKV_RANGE__COMMAND__CMD_DELETE:
        result->kind = RKV_RANGE_CMD_DELETE;
        return apply_delete(tx, desc, applied, cmd->delete_, result);
    case RKV_RANGE__COMMAND__CMD_CAS:
        result->kind = RKV_RANGE_CMD_CAS;
        return apply_cas(tx, desc, applied, cmd->cas, result);
    case RKV_RANGE__COMMAND__CMD_BATCH:
        result->kind = RKV_RANGE_CMD_BATCH;
        return apply_batch(tx, desc, applied, cmd->batch, result);
    case RKV_RANGE__COMMAND__CMD_SPLIT:
        result->kind = RKV_RANGE_CMD_SPLIT;
        return rkv_range__split_apply(tx, desc, applied, cmd->split, result);
    case RKV_RANGE__COMMAND__CMD_ALLOC_RANGE_ID:
        result->kind = RKV_RANGE_CMD_ALLOC_RANGE_ID;
        return apply_alloc_range_id(tx, desc, result);
    case RKV_RANGE__COMMAND__CMD_META_UPDATE:
        result->kind = RKV_RANGE_CMD_META_UPDATE;
        return apply_meta_update(tx, desc, cmd->meta_update, result);
    default:
        result->rv = RKV_EMALFORMED;
        return 0;
    }
}

/* Decodes and runs a NORMAL entry's command. */
static int apply_normal(struct rkv_range__tx *tx, struct rkv_range_desc *desc,
                        struct rkv_range__applied *applied,
                        const struct rkv_range_entry *entry,
                        struct rkv_range_apply_result *result)
{
    RkvRange__Command *cmd;
    int rv;

    if (entry->data_len == 0) {
        return 0;
    }
    cmd = rkv_range__command__unpack(NULL, entry->data_len, entry->data);
    if (cmd == NULL) {
        RKV_LOG(RKV_WARN, "undecodable entry range=%llu index=%llu",
                (unsigned long long)desc->range_id,
                (unsigned long long)entry->index);
        result->rv = RKV_EMALFORMED;
        return 0;
    }
    rv = apply_command(tx, desc, applied, cmd, result);
    rkv_range__command__free_unpacked(cmd, NULL);
    return rv;
}

int rkv_range__apply(struct rkv_range__tx *tx, uint64_t range_id,
                     const struct rkv_range_entry *entry,
                     struct rkv_range_apply_result *result)
{
    struct rkv_range_apply_result scratch;
    struct rkv_range__applied applied;
    struct rkv_range_desc desc;
    int rv;

    if (result == NULL) {
        result = &scratch;
    }
    memset(result, 0, sizeof(*result));

    rv = rkv_range__applied_load(tx, range_id, &applied);
    if (rv != 0) {
        return rv;
    }
    if (entry->index != applied.index + 1) {
        RKV_LOG(RKV_ERROR,
                "apply out of order range=%llu index=%llu applied=%llu",
                (unsigned long long)range_id, (unsigned long long)entry->index,
                (unsigned long long)applied.index);
        return -EINVAL;
    }
    rv = rkv_range__desc_load(tx, range_id, &desc);
    if (rv != 0) {
        return rv;
    }

    if (entry->type == RKV_RANGE_ENTRY_NORMAL) {
        rv = apply_normal(tx, &desc, &applied, entry, result);
        if (rv != 0) {
            rkv_range_apply_result_free(result);
            return rv;
        }
    }
    applied.index = entry->index;
    applied.term = entry->term;
    rv = rkv_range__applied_save(tx, range_id, &applied);
    if (result == &scratch || rv != 0) {
        rkv_range_apply_result_free(result);
    }
    return rv;
}
