/*
 * The one logging path. RKV_LOG checks the level inline, then rkv__log
 * formats the message and hands it to the installed emitter. The default
 * emitter writes whole lines to stderr with one write(2), so lines from
 * several threads never interleave.
 */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum rkv_log_level rkv__log_min_level = RKV_INFO;

static rkv_log_emit_cb log_emit;
static void *log_emit_data;
static _Thread_local uint64_t log_thread_node_id;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

static void log_emit_stderr(void *data, enum rkv_log_level level,
                            uint64_t node_id, const char *subsys,
                            const char *file, int line, const char *message)
{
    char buf[2048];
    struct timespec now;
    struct tm tm;
    const char *base = strrchr(file, '/');
    int n;

    (void)data;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s node=%llu %s "
                 "%s:%d %s\n",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000,
                 level_names[level], (unsigned long long)node_id, subsys,
                 base != NULL ? base + 1 : file, line, message);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof(buf)) {
        n = sizeof(buf) - 1;
        buf[n - 1] = '\n';
    }
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
        /* Nowhere left to report a failing stderr. */
    }
}

__attribute__((constructor)) static void log_init_from_env(void)
{
    const char *env = getenv("RKV_LOG_LEVEL");

    if (env == NULL) {
        return;
    }
    if (strcasecmp(env, "debug") == 0) {
        rkv__log_min_level = RKV_DEBUG;
    } else if (strcasecmp(env, "info") == 0) {
        rkv__log_min_level = RKV_INFO;
    } else if (strcasecmp(env, "warn") == 0) {
        rkv__log_min_level = RKV_WARN;
    } else if (strcasecmp(env, "error") == 0) {
        rkv__log_min_level = RKV_ERROR;
    }
}

void rkv_log_set_emitter(rkv_log_emit_cb emit, void *data)
{
    log_emit = emit;
    log_emit_data = data;
}

void rkv_log_set_level(enum rkv_log_level level)
{
    assert(level >= RKV_DEBUG && level <= RKV_ERROR);
    rkv__log_min_level = level;
}

void rkv_log_set_thread_node_id(uint64_t node_id)
{
    log_thread_node_id = node_id;
}

void rkv__log(enum rkv_log_level level, const char *subsys, const char *file,
              int line, const char *fmt, ...)
{
    char message[1536];
    va_list args;

    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);

    if (log_emit != NULL) {
        log_emit(log_emit_data, level, log_thread_node_id, subsys, file, line,
                 message);
    } else {
        log_emit_stderr(NULL, level, log_thread_node_id, subsys, file, line,
                        message);
    }
}
