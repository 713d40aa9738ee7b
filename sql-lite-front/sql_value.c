/*
 * The value of a row: its non-key, non-NULL columns in a compact encoding.
 *
 * Layout: one entry per stored column, in increasing column id order:
 *   uvarint((gap << 3) | type)  gap = id - previous id - 1 (the first
 *                               entry's previous id counts as -1)
 *   INTEGER  uvarint of the zigzag-encoded value (small magnitudes short)
 *   REAL     8 bytes, the IEEE-754 bits big-endian
 *   TEXT, BLOB  uvarint length, then the bytes
 * A NULL column has no entry, so a row of NULLs is an empty value. Column
 * ids never change once a table exists, so a value stays readable.
 *
 * Invariants:
 *   1. Entries are in strictly increasing column id order.
 *   2. Decoding rejects, with RKV_ECORRUPT, every value the encoder cannot
 *      produce at the lengths involved: truncation, an unknown type, an id
 *      past the table's columns, a varint longer than 10 bytes.
 */
#include "sql-lite-front/sql_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

#define UVARINT_MAX_LEN 10

int rkv_sql__buf_append_uvarint(struct rkv_sql_buf *buf, uint64_t value)
{
    uint8_t out[UVARINT_MAX_LEN];
    size_t n = 0;

    while (value >= 0x80) {
        out[n++] = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    out[n++] = (uint8_t)value;
    return rkv_sql__buf_append(buf, out, n);
}

int rkv_sql__read_uvarint(const uint8_t **pos, const uint8_t *end,
                          uint64_t *out)
{
    uint64_t value = 0;

    for (unsigned i = 0; i < UVARINT_MAX_LEN; i++) {
        uint8_t byte;

        if (*pos >= end) {
            return RKV_ECORRUPT;
        }
        byte = *(*pos)++;
        value |= (uint64_t)(byte & 0x7F) << (7 * i);
        if ((byte & 0x80) == 0) {
            *out = value;
            return 0;
        }
    }
    return RKV_ECORRUPT;
}

static int append_entry(struct rkv_sql_buf *buf, uint64_t gap,
                        const struct rkv_sql_datum *value)
{
    uint8_t real_bytes[8];
    uint64_t bits;
    int rv;

    rv = rkv_sql__buf_append_uvarint(buf, (gap << 3) | (uint64_t)value->type);
    if (rv != 0) {
        return rv;
    }
    switch (value->type) {
    case RKV_SQL_INTEGER:
        bits =
            ((uint64_t)value->integer << 1) ^ (uint64_t)(value->integer >> 63);
        return rkv_sql__buf_append_uvarint(buf, bits);
    case RKV_SQL_REAL:
        memcpy(&bits, &value->real, sizeof(bits));
        rkv_put_be64(real_bytes, bits);
        return rkv_sql__buf_append(buf, real_bytes, sizeof(real_bytes));
    case RKV_SQL_TEXT:
    case RKV_SQL_BLOB:
        rv = rkv_sql__buf_append_uvarint(buf, value->len);
        if (rv == 0) {
            rv = rkv_sql__buf_append(buf, value->bytes, value->len);
        }
        return rv;
    default:
        assert(false);
        return -EINVAL;
    }
}

int rkv_sql__row_encode(struct rkv_sql_buf *buf, size_t n_values,
                        const uint32_t *column_ids,
                        const struct rkv_sql_datum *values)
{
    int64_t previous_id = -1;
    size_t start_len = buf->len;

    for (size_t i = 0; i < n_values; i++) {
        int rv;

        assert((int64_t)column_ids[i] > previous_id);
        if (values[i].type == RKV_SQL_NULL) {
            continue;
        }
        rv = append_entry(buf, (uint64_t)(column_ids[i] - previous_id - 1),
                          &values[i]);
        if (rv != 0) {
            buf->len = start_len;
            return rv;
        }
        previous_id = column_ids[i];
    }
    return 0;
}

static int decode_payload(const uint8_t **pos, const uint8_t *end,
                          struct rkv_sql_datum *out)
{
    uint64_t bits = 0;
    int rv;

    switch (out->type) {
    case RKV_SQL_INTEGER:
        rv = rkv_sql__read_uvarint(pos, end, &bits);
        out->integer = (int64_t)((bits >> 1) ^ (~(bits & 1) + 1));
        return rv;
    case RKV_SQL_REAL:
        if (end - *pos < 8) {
            return RKV_ECORRUPT;
        }
        bits = rkv_get_be64(*pos);
        memcpy(&out->real, &bits, sizeof(bits));
        *pos += 8;
        return 0;
    case RKV_SQL_TEXT:
    case RKV_SQL_BLOB:
        rv = rkv_sql__read_uvarint(pos, end, &bits);
        if (rv != 0 || bits > (uint64_t)(end - *pos)) {
            return RKV_ECORRUPT;
        }
        out->bytes = *pos;
        out->len = (size_t)bits;
        *pos += bits;
        return 0;
    default:
        return RKV_ECORRUPT;
    }
}

int rkv_sql__row_decode(const uint8_t *value, size_t value_len,
                        size_t n_columns, struct rkv_sql_datum *out)
{
    const uint8_t *pos = value;
    const uint8_t *end = value + value_len;
    uint64_t next_id = 0;

    assert(value != NULL || value_len == 0);

    memset(out, 0, n_columns * sizeof(*out));
    while (pos < end) {
        uint64_t header;
        uint64_t id;
        int rv;

        rv = rkv_sql__read_uvarint(&pos, end, &header);
        if (rv != 0) {
            return rv;
        }
        id = next_id + (header >> 3);
        if (id < next_id || id >= n_columns) {
            return RKV_ECORRUPT;
        }
        out[id].type = (enum rkv_sql_type)(header & 7);
        rv = decode_payload(&pos, end, &out[id]);
        if (rv != 0) {
            return rv;
        }
        next_id = id + 1;
    }
    return 0;
}
