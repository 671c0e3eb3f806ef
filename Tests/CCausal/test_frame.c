#include "cc_test.h"

void cc_test_frame(void) {}
