/* The migration lease's unit tests (lease-tests.c), run by unit-tests.c; returns how many checks failed. */
#ifndef LEASE_TESTS_H
#define LEASE_TESTS_H

int run_lease_tests(void);

#endif
