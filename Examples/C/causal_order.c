/* The README's C example: the causal core without Swift.
 * Build against an installed core: cc causal_order.c $(pkg-config --cflags --libs ccausal) */
#include <stdio.h>
#include <ccausal/cc_clock.h>
#include <ccausal/cc_delivery.h>
#include <ccausal/cc_error.h>

int main(void) {
    /* Node 2 receives, out of order, a message from node 1 that depends on one from node 0. */
    uint64_t from0[3] = {1, 0, 0};
    uint64_t from1[3] = {1, 1, 0}; /* node 1 had delivered node 0's message when it sent */
    printf("from0 vs from1: %s\n", cc_clock_compare(from0, from1, 3) == CC_ORDER_BEFORE ? "before" : "?");

    cc_delivery engine;
    if (cc_delivery_init(&engine, 3, 64, 1024) != CC_OK) return 1;
    cc_msg a = {.clock = from0, .width = 3, .sender = 0, .level = CC_LEVEL_LOW};
    cc_msg b = {.clock = from1, .width = 3, .sender = 1, .level = CC_LEVEL_HIGH};

    int rc = cc_delivery_offer(&engine, &b); /* arrives first: held back */
    printf("offer b: %s, deliverable now: %s\n", cc_strerror(rc), cc_delivery_next(&engine) ? "yes" : "no");
    rc = cc_delivery_offer(&engine, &a);
    printf("offer a: %s\n", cc_strerror(rc));
    for (cc_msg *m; (m = cc_delivery_next(&engine)) != NULL;)
        printf("deliver from node %u (seq %llu)\n", m->sender, (unsigned long long)m->clock[m->sender]);
    printf("duplicate a: %s\n", cc_strerror(cc_delivery_offer(&engine, &a)));

    const uint64_t *local = cc_delivery_clock(&engine);
    printf("local clock: [%llu, %llu, %llu]\n", (unsigned long long)local[0], (unsigned long long)local[1],
           (unsigned long long)local[2]);
    cc_delivery_destroy(&engine);
    return local == NULL;
}
