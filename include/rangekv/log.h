/*
 * Logging configuration for programs that embed rangekv.
 *
 * Inside rangekv every message goes through RKV_LOG (common/common.h). The
 * default emitter writes one line to stderr:
 *   2026-12-04T21:10:00.123Z INFO  node=2 raft raft.c:120 became leader term=3
 * An embedder or a test can install its own emitter to capture lines.
 */
#ifndef RANGEKV_LOG_H
#define RANGEKV_LOG_H

#include <stdint.h>

enum rkv_log_level {
    RKV_DEBUG = 0,
    RKV_INFO = 1,
    RKV_WARN = 2,
    RKV_ERROR = 3,
};

/* Receives one formatted message (no trailing newline). Called on the thread
 * that logged; must be thread-safe when several nodes share a process. */
typedef void (*rkv_log_emit_cb)(void *data, enum rkv_log_level level,
                                uint64_t node_id, const char *subsys,
                                const char *file, int line,
                                const char *message);

/* Installs an emitter; NULL restores the stderr emitter. Not thread-safe:
 * call before starting nodes. */
void rkv_log_set_emitter(rkv_log_emit_cb emit, void *data);

/* Sets the minimum level emitted (default RKV_INFO, or the RKV_LOG_LEVEL
 * environment variable: debug, info, warn or error). */
void rkv_log_set_level(enum rkv_log_level level);

/* Sets the node id shown in messages logged from the calling thread. */
void rkv_log_set_thread_node_id(uint64_t node_id);

#endif /* RANGEKV_LOG_H */
