/*
 * The order-preserving key encoding (layout and invariants in
 * sql_internal.h) and the growable buffer it writes into.
 *
 * One key column is a tag byte, which also orders the storage classes as
 * SQLite does (NULL < numbers < TEXT < BLOB), followed by a payload:
 *   NULL     0x00, no payload.
 *   INTEGER  0x1F..0x30. A value v >= 0 needing k significant bytes
 *            (0..8) is tag 0x28 + k and those k bytes big-endian; v < 0
 *            with k significant bytes in ~v is tag 0x27 - k and the low k
 *            bytes of v. Small magnitudes are short and more bytes always
 *            mean a larger magnitude, so byte order is numeric order.
 *   REAL     0x40 and 8 bytes: the IEEE-754 bits with the sign bit flipped
 *            for positives and every bit flipped for negatives.
 *   TEXT     0x50, BLOB 0x60: the bytes with 0x00 escaped as 0x00 0xFF,
 *            ended by 0x00 0x01. The terminator sorts below any
 *            continuation, so a string sorts before its extensions.
 * A DESC column is the bitwise NOT of all of that, tag included. Mixing an
 * INTEGER and a REAL in one key column would order 2.5 after 3, so tables
 * give each key column one storage class (sql_vtab.c enforces it).
 */
#include "sql-lite-front/sql_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

enum {
    TAG_NULL = 0x00,
    TAG_INT_ZERO = 0x28, /* non-negative: + byte count */
    TAG_INT_MIN = 0x1F,  /* TAG_INT_ZERO - 1 - 8 */
    TAG_INT_MAX = 0x30,  /* TAG_INT_ZERO + 8 */
    TAG_REAL = 0x40,
    TAG_TEXT = 0x50,
    TAG_BLOB = 0x60,
    ESCAPE = 0x00,
    ESCAPED_ZERO = 0xFF,
    TERMINATOR = 0x01,
};

/* Bytes a buffer grows by at least, so small appends do not realloc. */
#define BUF_GROW_MIN 64

int rkv_sql__buf_append(struct rkv_sql_buf *buf, const void *src, size_t len)
{
    assert(buf != NULL);
    assert(src != NULL || len == 0);

    if (buf->len + len > buf->cap) {
        size_t cap = RKV_MAX(buf->cap * 2, buf->len + len);
        uint8_t *data;

        cap = RKV_MAX(cap, (size_t)BUF_GROW_MIN);
        data = rkv_realloc(buf->data, cap);
        if (data == NULL) {
            return -ENOMEM;
        }
        buf->data = data;
        buf->cap = cap;
    }
    if (len > 0) {
        memcpy(buf->data + buf->len, src, len);
    }
    buf->len += len;
    return 0;
}

int rkv_sql__buf_append_byte(struct rkv_sql_buf *buf, uint8_t byte)
{
    return rkv_sql__buf_append(buf, &byte, 1);
}

void rkv_sql__buf_free(struct rkv_sql_buf *buf)
{
    rkv_free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void rkv_sql__datum_clear(struct rkv_sql_datum *datum)
{
    if (datum->owned) {
        rkv_free((void *)datum->bytes);
    }
    memset(datum, 0, sizeof(*datum));
}

/* Counts the significant bytes of v (0 for 0). */
static unsigned significant_bytes(uint64_t v)
{
    unsigned n = 0;

    while (v != 0) {
        n++;
        v >>= 8;
    }
    return n;
}

static int append_int(struct rkv_sql_buf *buf, int64_t value)
{
    uint8_t out[9];
    uint64_t bits = (uint64_t)value;
    unsigned n;

    if (value >= 0) {
        n = significant_bytes(bits);
        out[0] = (uint8_t)(TAG_INT_ZERO + n);
    } else {
        n = significant_bytes(~bits);
        out[0] = (uint8_t)(TAG_INT_ZERO - 1 - n);
    }
    for (unsigned i = 0; i < n; i++) {
        out[1 + i] = (uint8_t)(bits >> (8 * (n - 1 - i)));
    }
    return rkv_sql__buf_append(buf, out, 1 + n);
}

static int append_real(struct rkv_sql_buf *buf, double value)
{
    uint8_t out[9];
    uint64_t bits;

    if (isnan(value)) {
        return -EINVAL;
    }
    if (value == 0) {
        value = 0; /* -0.0 equals 0.0 in SQL, so give both one key */
    }
    memcpy(&bits, &value, sizeof(bits));
    if (bits >> 63) {
        bits = ~bits;
    } else {
        bits |= 1ULL << 63;
    }
    out[0] = TAG_REAL;
    rkv_put_be64(out + 1, bits);
    return rkv_sql__buf_append(buf, out, sizeof(out));
}

static int append_escaped(struct rkv_sql_buf *buf, uint8_t tag,
                          const uint8_t *bytes, size_t len)
{
    static const uint8_t escaped_zero[2] = {ESCAPE, ESCAPED_ZERO};
    static const uint8_t terminator[2] = {ESCAPE, TERMINATOR};
    int rv;

    rv = rkv_sql__buf_append_byte(buf, tag);
    for (size_t i = 0; rv == 0 && i < len;) {
        const uint8_t *zero = memchr(bytes + i, 0, len - i);
        size_t run_len = zero == NULL ? len - i : (size_t)(zero - bytes) - i;

        rv = rkv_sql__buf_append(buf, bytes + i, run_len);
        i += run_len;
        if (rv == 0 && zero != NULL) {
            rv = rkv_sql__buf_append(buf, escaped_zero, 2);
            i++;
        }
    }
    if (rv == 0) {
        rv = rkv_sql__buf_append(buf, terminator, 2);
    }
    return rv;
}

int rkv_sql__key_append_datum(struct rkv_sql_buf *buf,
                              const struct rkv_sql_datum *datum,
                              bool descending)
{
    size_t start_len = buf->len;
    int rv;

    assert(datum != NULL);

    switch (datum->type) {
    case RKV_SQL_NULL:
        rv = rkv_sql__buf_append_byte(buf, TAG_NULL);
        break;
    case RKV_SQL_INTEGER:
        rv = append_int(buf, datum->integer);
        break;
    case RKV_SQL_REAL:
        rv = append_real(buf, datum->real);
        break;
    case RKV_SQL_TEXT:
        rv = append_escaped(buf, TAG_TEXT, datum->bytes, datum->len);
        break;
    case RKV_SQL_BLOB:
        rv = append_escaped(buf, TAG_BLOB, datum->bytes, datum->len);
        break;
    default:
        assert(false);
        rv = -EINVAL;
    }
    if (rv != 0) {
        buf->len = start_len;
        return rv;
    }
    if (descending) {
        for (size_t i = start_len; i < buf->len; i++) {
            buf->data[i] = (uint8_t)~buf->data[i];
        }
    }
    return 0;
}

int rkv_sql__key_append_prefix(struct rkv_sql_buf *buf, uint64_t table_id,
                               uint64_t index_id)
{
    int rv;

    assert(table_id <= INT64_MAX);
    assert(index_id <= INT64_MAX);

    rv = rkv_sql__buf_append_byte(buf, RKV_SQL_KEY_PREFIX);
    if (rv == 0) {
        rv = append_int(buf, (int64_t)table_id);
    }
    if (rv == 0) {
        rv = append_int(buf, (int64_t)index_id);
    }
    return rv;
}

/* Reads one byte at *pos, un-inverting it for a descending column. */
static int read_byte(const uint8_t **pos, const uint8_t *end, bool descending,
                     uint8_t *out)
{
    if (*pos >= end) {
        return RKV_ECORRUPT;
    }
    *out = descending ? (uint8_t) ~**pos : **pos;
    (*pos)++;
    return 0;
}

static int decode_int(const uint8_t **pos, const uint8_t *end, bool descending,
                      uint8_t tag, int64_t *out)
{
    bool negative = tag < TAG_INT_ZERO;
    unsigned n = negative ? (unsigned)(TAG_INT_ZERO - 1 - tag)
                          : (unsigned)(tag - TAG_INT_ZERO);
    uint64_t bits = negative ? UINT64_MAX : 0;

    for (unsigned i = 0; i < n; i++) {
        uint8_t byte;
        int rv = read_byte(pos, end, descending, &byte);

        if (rv != 0) {
            return rv;
        }
        bits = (bits << 8) | byte;
    }
    /* A non-minimal length would give one value two keys. */
    if (negative ? significant_bytes(~bits) != n
                 : significant_bytes(bits) != n) {
        return RKV_ECORRUPT;
    }
    *out = (int64_t)bits;
    return 0;
}

static int decode_real(const uint8_t **pos, const uint8_t *end, bool descending,
                       double *out)
{
    uint8_t raw[8];
    uint64_t bits;

    for (size_t i = 0; i < sizeof(raw); i++) {
        int rv = read_byte(pos, end, descending, &raw[i]);

        if (rv != 0) {
            return rv;
        }
    }
    bits = rkv_get_be64(raw);
    if (bits >> 63) {
        bits &= ~(1ULL << 63);
    } else {
        bits = ~bits;
    }
    memcpy(out, &bits, sizeof(*out));
    return 0;
}

static int decode_escaped(const uint8_t **pos, const uint8_t *end,
                          bool descending, struct rkv_sql_datum *out)
{
    struct rkv_sql_buf bytes = {0};
    int rv = 0;

    for (;;) {
        uint8_t byte;
        uint8_t next;

        rv = read_byte(pos, end, descending, &byte);
        if (rv != 0) {
            goto err_after_alloc;
        }
        if (byte != ESCAPE) {
            rv = rkv_sql__buf_append_byte(&bytes, byte);
            if (rv != 0) {
                goto err_after_alloc;
            }
            continue;
        }
        rv = read_byte(pos, end, descending, &next);
        if (rv != 0) {
            goto err_after_alloc;
        }
        if (next == TERMINATOR) {
            break;
        }
        if (next != ESCAPED_ZERO) {
            rv = RKV_ECORRUPT;
            goto err_after_alloc;
        }
        rv = rkv_sql__buf_append_byte(&bytes, 0);
        if (rv != 0) {
            goto err_after_alloc;
        }
    }
    out->bytes = bytes.data;
    out->len = bytes.len;
    out->owned = bytes.data != NULL;
    return 0;

err_after_alloc:
    rkv_sql__buf_free(&bytes);
    assert(rv != 0);
    return rv;
}

int rkv_sql__key_decode_datum(const uint8_t **pos, const uint8_t *end,
                              bool descending, struct rkv_sql_datum *out)
{
    uint8_t tag;
    int rv;

    assert(pos != NULL && *pos != NULL);
    assert(out != NULL);

    memset(out, 0, sizeof(*out));
    rv = read_byte(pos, end, descending, &tag);
    if (rv != 0) {
        return rv;
    }
    if (tag == TAG_NULL) {
        out->type = RKV_SQL_NULL;
        return 0;
    }
    if (tag >= TAG_INT_MIN && tag <= TAG_INT_MAX) {
        out->type = RKV_SQL_INTEGER;
        return decode_int(pos, end, descending, tag, &out->integer);
    }
    if (tag == TAG_REAL) {
        out->type = RKV_SQL_REAL;
        return decode_real(pos, end, descending, &out->real);
    }
    if (tag == TAG_TEXT || tag == TAG_BLOB) {
        out->type = tag == TAG_TEXT ? RKV_SQL_TEXT : RKV_SQL_BLOB;
        return decode_escaped(pos, end, descending, out);
    }
    return RKV_ECORRUPT;
}

int rkv_sql__key_decode_prefix(const uint8_t **pos, const uint8_t *end,
                               uint64_t *table_id, uint64_t *index_id)
{
    struct rkv_sql_datum table = {0};
    struct rkv_sql_datum index = {0};
    int rv;

    if (*pos >= end || **pos != RKV_SQL_KEY_PREFIX) {
        return RKV_ECORRUPT;
    }
    (*pos)++;
    rv = rkv_sql__key_decode_datum(pos, end, false, &table);
    if (rv == 0) {
        rv = rkv_sql__key_decode_datum(pos, end, false, &index);
    }
    if (rv != 0) {
        return rv;
    }
    if (table.type != RKV_SQL_INTEGER || index.type != RKV_SQL_INTEGER ||
        table.integer < 0 || index.integer < 0) {
        rkv_sql__datum_clear(&table);
        rkv_sql__datum_clear(&index);
        return RKV_ECORRUPT;
    }
    *table_id = (uint64_t)table.integer;
    *index_id = (uint64_t)index.integer;
    return 0;
}

void rkv_sql__key_prefix_end(struct rkv_sql_buf *buf)
{
    while (buf->len > 0 && buf->data[buf->len - 1] == 0xFF) {
        buf->len--;
    }
    if (buf->len > 0) {
        buf->data[buf->len - 1]++;
    }
}

/* Appends text to out at *used, keeping room for the NUL. */
static void format_append(char *out, size_t out_len, size_t *used,
                          const char *text)
{
    size_t text_len = strlen(text);
    size_t room = out_len - 1 - *used;
    size_t n = RKV_MIN(text_len, room);

    memcpy(out + *used, text, n);
    *used += n;
    out[*used] = '\0';
}

static void format_datum(const struct rkv_sql_datum *datum, char *out,
                         size_t out_len, size_t *used)
{
    char piece[64];

    switch (datum->type) {
    case RKV_SQL_NULL:
        format_append(out, out_len, used, "NULL");
        return;
    case RKV_SQL_INTEGER:
        snprintf(piece, sizeof(piece), "%lld", (long long)datum->integer);
        format_append(out, out_len, used, piece);
        return;
    case RKV_SQL_REAL:
        snprintf(piece, sizeof(piece), "%.17g", datum->real);
        format_append(out, out_len, used, piece);
        return;
    default:
        break;
    }
    format_append(out, out_len, used, datum->type == RKV_SQL_TEXT ? "'" : "x'");
    for (size_t i = 0; i < datum->len; i++) {
        uint8_t byte = datum->bytes[i];

        if (datum->type == RKV_SQL_TEXT && byte >= 0x20 && byte != '\'' &&
            byte != 0x7F) {
            snprintf(piece, sizeof(piece), "%c", byte);
        } else {
            snprintf(piece, sizeof(piece),
                     datum->type == RKV_SQL_TEXT ? "\\x%02x" : "%02x", byte);
        }
        format_append(out, out_len, used, piece);
    }
    format_append(out, out_len, used, "'");
}

static void format_hex(const uint8_t *key, size_t key_len, char *out,
                       size_t out_len, size_t *used)
{
    char piece[8];

    format_append(out, out_len, used, "0x");
    for (size_t i = 0; i < key_len; i++) {
        snprintf(piece, sizeof(piece), "%02x", key[i]);
        format_append(out, out_len, used, piece);
    }
}

void rkv_sql__key_format(const uint8_t *key, size_t key_len, bool is_end,
                         char *out, size_t out_len)
{
    const uint8_t *pos = key;
    const uint8_t *end = key + key_len;
    uint64_t table_id;
    uint64_t index_id;
    char piece[64];
    size_t used = 0;

    assert(out_len > 0);
    out[0] = '\0';
    if (key_len == 0) {
        format_append(out, out_len, &used, is_end ? "/Max" : "/Min");
        return;
    }
    if (rkv_sql__key_decode_prefix(&pos, end, &table_id, &index_id) != 0) {
        format_hex(key, key_len, out, out_len, &used);
        return;
    }
    snprintf(piece, sizeof(piece), "/Table/%llu/%llu",
             (unsigned long long)table_id, (unsigned long long)index_id);
    format_append(out, out_len, &used, piece);
    while (pos < end) {
        const uint8_t *column_start = pos;
        struct rkv_sql_datum datum;
        /* Ascending tags are all below 0x80, so an inverted one marks a
         * descending column. */
        bool descending = *pos > 0x80;

        if (rkv_sql__key_decode_datum(&pos, end, descending, &datum) != 0) {
            format_append(out, out_len, &used, "/");
            format_hex(column_start, (size_t)(end - column_start), out, out_len,
                       &used);
            return;
        }
        format_append(out, out_len, &used, "/");
        format_datum(&datum, out, out_len, &used);
        rkv_sql__datum_clear(&datum);
    }
}
