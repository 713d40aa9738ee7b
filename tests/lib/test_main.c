/*
 * The test runner behind tests/lib/test.h. Each selected test runs in a
 * forked child so that a crash, a sanitizer report or a timeout fails that
 * test alone; the parent prints one line per test and a closing
 * "N passed, N failed" line.
 */
#include "tests/lib/test.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rangekv/error.h"

#define TEST_MAX 1024

struct test_case {
    const char *suite;
    const char *name;
    rkv_test_fn fn;
};

static struct test_case tests[TEST_MAX];
static int n_tests;
static char test_tmpdir[4096];

void rkv_test_register(const char *suite, const char *name, rkv_test_fn fn)
{
    if (n_tests == TEST_MAX) {
        fprintf(stderr, "too many tests: the limit is %d\n", TEST_MAX);
        abort();
    }
    tests[n_tests].suite = suite;
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

const char *rkv_test_errname(int rv)
{
    return rkv_errname(rv);
}

void rkv_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list args;

    fprintf(stderr, "%s:%d: assertion failed: ", file, line);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

const char *rkv_test_tmpdir(void)
{
    const char *base;

    if (test_tmpdir[0] != '\0') {
        return test_tmpdir;
    }
    base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    snprintf(test_tmpdir, sizeof(test_tmpdir), "%s/rkv-test-XXXXXX", base);
    if (mkdtemp(test_tmpdir) == NULL) {
        rkv_test_fail(__FILE__, __LINE__, "mkdtemp %s failed: %s", test_tmpdir,
                      strerror(errno));
    }
    return test_tmpdir;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static double elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* Runs one test in a child process; returns true when it passed. */
static bool run_one(const struct test_case *test, int timeout_s)
{
    struct timespec start;
    pid_t pid;
    int status;

    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork failed: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        alarm((unsigned)timeout_s);
        test->fn();
        if (test_tmpdir[0] != '\0') {
            nftw(test_tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        }
        fflush(stdout);
        exit(0);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok   %s/%s (%.0f ms)\n", test->suite, test->name,
               elapsed_ms(&start));
        return true;
    }
    if (WIFSIGNALED(status)) {
        printf("FAIL %s/%s: killed by signal %d%s (%.0f ms)\n", test->suite,
               test->name, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (timeout)" : "",
               elapsed_ms(&start));
    } else {
        printf("FAIL %s/%s: exit status %d (%.0f ms)\n", test->suite,
               test->name, WEXITSTATUS(status), elapsed_ms(&start));
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *pattern = argc > 1 ? argv[1] : NULL;
    const char *timeout_env = getenv("RKV_TEST_TIMEOUT_S");
    int timeout_s = timeout_env != NULL ? atoi(timeout_env) : 300;
    int n_passed = 0;
    int n_failed = 0;
    char full_name[512];

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < n_tests; i++) {
        snprintf(full_name, sizeof(full_name), "%s/%s", tests[i].suite,
                 tests[i].name);
        if (pattern != NULL && strstr(full_name, pattern) == NULL) {
            continue;
        }
        if (run_one(&tests[i], timeout_s > 0 ? timeout_s : 300)) {
            n_passed++;
        } else {
            n_failed++;
        }
    }
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 && n_passed > 0 ? 0 : 1;
}
