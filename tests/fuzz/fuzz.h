/* fuzz.h - the libFuzzer entry point every tests/fuzz/fuzz_NAME.c defines.
 *
 * Built two ways (docs/testing.md, "Fuzzing"): with clang and
 * -fsanitize=fuzzer,address,undefined by `make fuzz`, and with the normal
 * compiler and replay.c's main() by `make unit-test`, which feeds every file
 * of tests/fuzz/corpus/NAME/ to the target so that each crash found once
 * stays a regression test.
 */
#ifndef KILN_TESTS_FUZZ_H
#define KILN_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input. Returns 0 (libFuzzer's contract); a bug crashes (a
 * sanitizer report, or abort() from FUZZ_ASSERT). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: a failure prints it and aborts,
 * which libFuzzer and the replay driver both report as a crash (test code
 * only). */
#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
