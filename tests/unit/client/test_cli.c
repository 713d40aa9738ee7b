/*
 * The helpers of the client subcommands: key escaping both ways and number
 * parsing.
 */
#define RKV_LOG_SUBSYS "test"
#include "client/client_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/test.h"

/* Escaping then unescaping returns the original bytes, and the escaped
 * form is the expected printable text. */
TEST(client_cli, escape_round_trip)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *escaped;
    } cases[] = {
        {"", 0, ""},
        {"plain key", 9, "plain key"},
        {"a\\b", 3, "a\\\\b"},
        {"\x00\x01\xff", 3, "\\x00\\x01\\xff"},
        {"tab\there", 8, "tab\\x09here"},
        {"\x7f~", 2, "\\x7f~"},
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        char escaped[128];
        uint8_t *decoded;
        size_t decoded_len;

        rkv_client__cli_escape_str(escaped, sizeof(escaped),
                                   (const uint8_t *)cases[i].bytes,
                                   cases[i].len);
        ASSERT_STR_EQ(escaped, cases[i].escaped);
        ASSERT_OK(rkv_client__cli_unescape(escaped, &decoded, &decoded_len));
        ASSERT_MEM_EQ(decoded, decoded_len, cases[i].bytes, cases[i].len);
        rkv_free(decoded);
    }
}

/* A truncated or non-hex escape is rejected; a lone backslash too. */
TEST(client_cli, unescape_rejects_malformed)
{
    static const char *const bad[] = {"\\",  "\\x",  "\\x4", "\\xg0",
                                      "\\n", "ok\\", "\\X41"};
    uint8_t *decoded;
    size_t decoded_len;

    for (size_t i = 0; i < RKV_ARRAY_SIZE(bad); i++) {
        ASSERT_INT_EQ(rkv_client__cli_unescape(bad[i], &decoded, &decoded_len),
                      -EINVAL);
    }
}

/* The escaped form is cut cleanly when the buffer is short. */
TEST(client_cli, escape_truncates_whole_escapes)
{
    char escaped[6];

    rkv_client__cli_escape_str(escaped, sizeof(escaped),
                               (const uint8_t *)"a\x01\x02", 3);
    ASSERT_STR_EQ(escaped, "a\\x01");
}

/* Numbers parse within bounds only, with no sign, space or suffix. */
TEST(client_cli, parse_u64_bounds)
{
    uint64_t value;

    ASSERT_OK(rkv_client__cli_parse_u64("42", 1, 100, &value));
    ASSERT_UINT_EQ(value, 42);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64("0", 1, 100, &value), -EINVAL);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64("101", 1, 100, &value), -EINVAL);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64("-1", 0, 100, &value), -EINVAL);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64(" 1", 0, 100, &value), -EINVAL);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64("1k", 0, 100, &value), -EINVAL);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64("", 0, 100, &value), -EINVAL);
    ASSERT_INT_EQ(rkv_client__cli_parse_u64("99999999999999999999", 0,
                                            UINT64_MAX, &value),
                  -EINVAL);
}

/* RANGEKV_HOST overrides the default address. */
TEST(client_cli, default_host)
{
    unsetenv("RANGEKV_HOST");
    ASSERT_STR_EQ(rkv_client__cli_default_host(), "127.0.0.1:26257");
    setenv("RANGEKV_HOST", "127.0.0.1:9", 1);
    ASSERT_STR_EQ(rkv_client__cli_default_host(), "127.0.0.1:9");
}
