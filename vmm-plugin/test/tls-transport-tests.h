/* The TLS transport's unit tests (tls-transport-tests.c), run by unit-tests.c; returns how many checks failed. */
#ifndef TLS_TRANSPORT_TESTS_H
#define TLS_TRANSPORT_TESTS_H

int run_tls_transport_tests(void);

#endif
