/* Key escaping and argument parsing shared by the client subcommands. */
#include "client/client_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool cli_is_printable(uint8_t byte)
{
    return byte >= 0x20 && byte < 0x7f && byte != '\\';
}

void rkv_client__cli_escape(FILE *out, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (cli_is_printable(data[i])) {
            fputc(data[i], out);
        } else if (data[i] == '\\') {
            fputs("\\\\", out);
        } else {
            fprintf(out, "\\x%02x", data[i]);
        }
    }
}

char *rkv_client__cli_escape_str(char *buf, size_t buf_len, const uint8_t *data,
                                 size_t len)
{
    size_t pos = 0;

    assert(buf_len > 0);
    for (size_t i = 0; i < len && pos + 1 < buf_len; i++) {
        char piece[5];
        size_t piece_len;

        if (cli_is_printable(data[i])) {
            piece[0] = (char)data[i];
            piece_len = 1;
        } else if (data[i] == '\\') {
            memcpy(piece, "\\\\", 2);
            piece_len = 2;
        } else {
            snprintf(piece, sizeof(piece), "\\x%02x", data[i]);
            piece_len = 4;
        }
        if (pos + piece_len >= buf_len) {
            break;
        }
        memcpy(buf + pos, piece, piece_len);
        pos += piece_len;
    }
    buf[pos] = '\0';
    return buf;
}

static int cli_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int rkv_client__cli_unescape(const char *text, uint8_t **out, size_t *out_len)
{
    size_t text_len = strlen(text);
    uint8_t *buf = rkv_malloc(text_len + 1);
    size_t len = 0;

    if (buf == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < text_len; i++) {
        int high;
        int low;

        if (text[i] != '\\') {
            buf[len++] = (uint8_t)text[i];
            continue;
        }
        if (text[i + 1] == '\\') {
            buf[len++] = '\\';
            i++;
            continue;
        }
        if (text[i + 1] != 'x' || (high = cli_hex_digit(text[i + 2])) < 0 ||
            (low = cli_hex_digit(text[i + 3])) < 0) {
            rkv_free(buf);
            return -EINVAL;
        }
        buf[len++] = (uint8_t)(high * 16 + low);
        i += 3;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

const char *rkv_client__cli_default_host(void)
{
    const char *host = getenv("RANGEKV_HOST");

    return host != NULL && host[0] != '\0' ? host : RKV_CLIENT_CLI_HOST_DEFAULT;
}

int rkv_client__cli_parse_u64(const char *text, uint64_t min, uint64_t max,
                              uint64_t *out)
{
    char *end;
    unsigned long long value;

    if (text[0] < '0' || text[0] > '9') {
        return -EINVAL;
    }
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max) {
        return -EINVAL;
    }
    *out = value;
    return 0;
}
