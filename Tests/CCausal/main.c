/* Runs the C tests listed in test_list.h: all of them (`cc_tests`), one area
 * (`cc_tests node`), or one test (`cc_tests node restart`); `cc_tests --list`
 * prints them, one "AREA NAME" a line. Each test runs under a watchdog, and
 * its result and time go to stdout. */
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cc_test.h"

int cc_test_failures = 0;

/* A test that hangs fails alone, with its name, before ctest's timeout. */
enum { WATCHDOG_S = 100 };

typedef struct test {
    const char *area, *name;
    void (*run)(void);
} test;

#define CC_TEST_ENTRY(area, name) {#area, #name, cc_test_##area##_##name},
static const test tests[] = {CC_TESTS(CC_TEST_ENTRY)};
#undef CC_TEST_ENTRY

static const test *running;

static void on_watchdog(int sig) {
    (void)sig;
    /* Only async-signal-safe calls here. */
    static const char msg[] = ": watchdog: the test did not finish in time\n";
    if (write(2, running->area, strlen(running->area)) < 0 || write(2, ".", 1) < 0 ||
        write(2, running->name, strlen(running->name)) < 0 || write(2, msg, sizeof msg - 1) < 0)
        _exit(1);
    _exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t count = sizeof tests / sizeof tests[0];
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s %s\n", tests[i].area, tests[i].name);
        return 0;
    }
    signal(SIGALRM, on_watchdog);
    signal(SIGPIPE, SIG_IGN); /* a peer that reset its connection: the write fails, the test goes on */
    int ran = 0;
    for (size_t i = 0; i < count; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].area) != 0)
            continue;
        if (argc > 2 && strcmp(argv[2], tests[i].name) != 0)
            continue;
        running = &tests[i];
        int before = cc_test_failures;
        double start = now_s();
        alarm(WATCHDOG_S);
        tests[i].run();
        alarm(0);
        char id[64];
        snprintf(id, sizeof id, "%s.%s", tests[i].area, tests[i].name);
        printf("%-32s %-6s %6.2f s\n", id, cc_test_failures == before ? "ok" : "FAILED", now_s() - start);
        fflush(stdout);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no such test: %s%s%s (cc_tests --list names them)\n", argv[1], argc > 2 ? " " : "",
                argc > 2 ? argv[2] : "");
        return 2;
    }
    return cc_test_failures == 0 ? 0 : 1;
}
