#include "cc_test.h"

void cc_test_node(void) {}
