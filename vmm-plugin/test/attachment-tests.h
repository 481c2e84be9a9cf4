/* Attachment frames' unit tests (attachment-tests.c), run by unit-tests.c; returns how many checks failed. */
#ifndef ATTACHMENT_TESTS_H
#define ATTACHMENT_TESTS_H

int run_attachment_tests(void);

#endif
