/* test_chat.c - placeholder */
#include "test.h"
int main(void) { return TEST_DONE(); }
