/* Every C test, by area, in the order `cc_tests` runs them (after libuv's
 * test-list.h). `cc_tests` runs them all, `cc_tests AREA` one area,
 * `cc_tests AREA NAME` one test, `cc_tests --list` prints them. CMakeLists.txt
 * reads this list and registers each test with ctest as AREA.NAME, so that
 * `ctest -R node.restart` runs and reports one. One entry a line. */
#ifndef CC_TEST_LIST_H
#define CC_TEST_LIST_H

#define CC_TESTS(X)                                                                                          \
    X(clock, selection)                                                                                      \
    X(clock, tick)                                                                                           \
    X(clock, paths)                                                                                          \
    X(delivery, in_order)                                                                                    \
    X(delivery, waits_for_dependency)                                                                        \
    X(delivery, concurrent)                                                                                  \
    X(delivery, duplicates)                                                                                  \
    X(delivery, random_histories)                                                                            \
    X(delivery, emergency)                                                                                   \
    X(delivery, bounds)                                                                                      \
    X(delivery, scale)                                                                                       \
    X(delivery, grow)                                                                                        \
    X(delivery, send)                                                                                        \
    X(delivery, take)                                                                                        \
    X(queue, single_thread)                                                                                  \
    X(queue, mpsc_stress)                                                                                    \
    X(queue, mpmc_stress)                                                                                    \
    X(queue, mpmc_drain_race)                                                                                \
    X(queue, pool_single)                                                                                    \
    X(queue, pool_concurrent)                                                                                \
    X(loop, start_stop)                                                                                      \
    X(loop, calls_from_threads)                                                                              \
    X(loop, stop_drains_and_refuses)                                                                         \
    X(loop, stop_from_loop_thread)                                                                           \
    X(inbox, closed_by_stop)                                                                                 \
    X(inbox, history)                                                                                        \
    X(inbox, local_sends)                                                                                    \
    X(inbox, levels)                                                                                         \
    X(inbox, raw)                                                                                            \
    X(inbox, buffers)                                                                                        \
    X(inbox, room)                                                                                           \
    X(inbox, close_in_flight)                                                                                \
    X(inbox, close_race)                                                                                     \
    X(frame, golden)                                                                                         \
    X(frame, round_trips)                                                                                    \
    X(frame, sparse_edges)                                                                                   \
    X(frame, stream)                                                                                         \
    X(frame, truncated)                                                                                      \
    X(frame, too_big)                                                                                        \
    X(frame, length)                                                                                         \
    X(frame, header_faults)                                                                                  \
    X(frame, clock_faults)                                                                                   \
    X(frame, encode_errors)                                                                                  \
    X(frame, fuzz)                                                                                           \
    X(node, group)                                                                                           \
    X(node, wrong_key)                                                                                       \
    X(node, raw_sockets)                                                                                     \
    X(node, cut_connections)                                                                                 \
    X(node, restart)                                                                                         \
    X(node, held_back)                                                                                       \
    X(node, back_pressure)                                                                                   \
    X(node, room_and_acked)                                                                                  \
    X(node, growth)                                                                                          \
    X(node, forwarded)                                                                                       \
    X(node, large)                                                                                           \
    X(node, wake_ups)                                                                                        \
    X(node, confirm)                                                                                         \
    X(node, crash)                                                                                           \
    X(node, wide_groups)                                                                                     \
    X(node, growth_by_one)                                                                                   \
    X(node, max_width)                                                                                       \
    X(node, handshake_buffer)                                                                                \
    X(node, handshake_flood)                                                                                 \
    X(node, paused_too_long)

#endif
