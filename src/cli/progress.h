/* progress.h - the live progress line of long operations (deploy, run).
 *
 * On a terminal the line is redrawn in place ("\r", the text, clear to the
 * end of the line), cut to the terminal's width; the caller updates it
 * about ten times a second and the elapsed time and a spinner move. When
 * the output is not a terminal, one plain line is printed per stage change
 * ("deploying echo: loading (3.2s)"), so logs stay readable.
 */
#ifndef KILN_CLI_PROGRESS_H
#define KILN_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct progress;

/* Starts a progress display on out for `label` ("deploying echo"); tty
 * chooses the live line. The clock starts now. Returns NULL when out of
 * memory. */
struct progress *progress_create(FILE *out, bool tty, const char *label);

/* Ends the display (finishing a live line with a newline if needed) and
 * frees it. Accepts NULL. */
void progress_destroy(struct progress *p);

/* Shows the current stage: redraws the live line, or prints a line when
 * the stage differs from the last one shown. */
void progress_update(struct progress *p, const char *stage);

/* Shows the final stage (always printed, also when it did not change) and
 * ends the line. */
void progress_finish(struct progress *p, const char *stage);

/* Milliseconds since progress_create. */
int64_t progress_elapsed_ms(const struct progress *p);

/* The text of a line: "LABEL: STAGE (ELAPSED)", prefixed by the spinner
 * character `spin` when it is not '\0'; cut to `columns` code points when
 * columns > 0. Returns the length written (snprintf-like). */
int progress_format(char *buf, size_t size, const char *label, const char *stage,
		    int64_t elapsed_ms, char spin, size_t columns);

#endif
