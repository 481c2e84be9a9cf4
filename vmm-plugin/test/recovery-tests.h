/* Unit tests of the plugin against an agent restarted mid-migration (recovery-tests.c), run by unit-tests.c; returns how many checks failed. */
#ifndef RECOVERY_TESTS_H
#define RECOVERY_TESTS_H

int run_recovery_tests(void);

#endif
