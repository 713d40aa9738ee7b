/*
 * Helpers shared by the client subcommands of `rangekv` (client_cli.c) and
 * `rangekv cluster` (cluster_cli.c): key escaping and the --host default.
 */
#ifndef RKV_CLIENT_CLI_H
#define RKV_CLIENT_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

/* Client address used when --host is absent and RANGEKV_HOST is unset. */
#define RKV_CLIENT_CLI_HOST_DEFAULT "127.0.0.1:26257"

/* Writes len bytes to out with backslash as "\\" and every byte outside
 * printable ASCII as "\xNN", so any key prints on one line. */
void rkv_client__cli_escape(FILE *out, const uint8_t *data, size_t len);

/* Formats the escaped form into buf (truncated to buf_len - 1 bytes and
 * terminated). Returns buf. */
char *rkv_client__cli_escape_str(char *buf, size_t buf_len, const uint8_t *data,
                                 size_t len);

/* Decodes a command-line argument that may contain "\xNN" and "\\" escapes
 * into a new buffer *out (free with rkv_free; never NULL on success).
 * Returns 0, -EINVAL for a malformed escape, or -ENOMEM. */
int rkv_client__cli_unescape(const char *text, uint8_t **out, size_t *out_len);

/* Returns the --host default: $RANGEKV_HOST or RKV_CLIENT_CLI_HOST_DEFAULT. */
const char *rkv_client__cli_default_host(void);

/* Parses a decimal unsigned integer in [min, max]. Returns 0 or -EINVAL. */
int rkv_client__cli_parse_u64(const char *text, uint64_t min, uint64_t max,
                              uint64_t *out);

#endif /* RKV_CLIENT_CLI_H */
