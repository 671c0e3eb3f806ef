/* Runs one test area (`cc_tests clock`) or all of them (`cc_tests`). */
#include <string.h>
#include "cc_test.h"

int cc_test_failures = 0;

static const struct {
    const char *name;
    void (*run)(void);
} areas[] = {
    {"clock", cc_test_clock}, {"delivery", cc_test_delivery}, {"queue", cc_test_queue},
    {"loop", cc_test_loop},   {"frame", cc_test_frame}, {"node", cc_test_node},
};

int main(int argc, char **argv) {
    int ran = 0;
    for (size_t i = 0; i < sizeof areas / sizeof areas[0]; i++) {
        if (argc > 1 && strcmp(argv[1], areas[i].name) != 0) continue;
        int before = cc_test_failures;
        areas[i].run();
        printf("%-10s %s\n", areas[i].name, cc_test_failures == before ? "ok" : "FAILED");
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "unknown test area: %s\n", argv[1]);
        return 2;
    }
    return cc_test_failures == 0 ? 0 : 1;
}
