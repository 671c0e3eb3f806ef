/* The causal core as Swift imports it: one header per concept. */
#ifndef CCAUSAL_H
#define CCAUSAL_H
#include "cc_error.h"
#include "cc_clock.h"
#include "cc_queue.h"
#include "cc_pool.h"
#include "cc_delivery.h"
#include "cc_frame.h"
#include "cc_loop.h"
#include "cc_inbox.h"
#include "cc_node.h"
#endif
