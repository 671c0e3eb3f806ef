#include "cc_test.h"

void cc_test_queue(void) {}
