#include "cc_test.h"

void cc_test_clock(void) {}
