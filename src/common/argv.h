/* argv.h - shell-like command-line splitting and kernel command-line lookups.
 *
 * Used by kiln-init to turn the part of the kernel command line after " -- "
 * into an argv, and to read kiln's parameters (kiln.ctl=...) from the part
 * before it. Shared in src/common so that unit tests can link it.
 *
 * Quoting rules of argv_split (a subset of POSIX sh, without expansion):
 *   - words are separated by unquoted blanks (space, tab, newline, CR, VT, FF);
 *   - '...' keeps everything up to the next ' literally;
 *   - "..." keeps everything literally except \" \\ \$ \` (the backslash is
 *     removed) and backslash-newline (both removed);
 *   - outside quotes, \c stands for c, and backslash-newline is removed;
 *   - "" and '' make an empty word;
 *   - $, ;, |, &, *, ~ and the like are ordinary characters: for a pipeline
 *     or a variable, run sh -c '...'.
 */
#ifndef KILN_COMMON_ARGV_H
#define KILN_COMMON_ARGV_H

#include <stdbool.h>
#include <stddef.h>

/* Most words argv_split accepts. */
#define ARGV_MAX_ARGS 256
/* Most bytes the words may take, their terminating NULs included. */
#define ARGV_MAX_BYTES 4096

/* Splits s (NUL-terminated) into words by the rules above. On success returns
 * 0, stores a NULL-terminated vector in *argv_out (one allocation that the
 * caller owns and frees with argv_free) and the number of words in *argc_out
 * (possibly 0). Returns -EINVAL for an unterminated quote or a trailing
 * backslash, -E2BIG past ARGV_MAX_ARGS words or ARGV_MAX_BYTES bytes, -ENOMEM.
 * On failure *argv_out and *argc_out are left alone. */
int argv_split(const char *s, char ***argv_out, int *argc_out);

/* Frees a vector from argv_split. Accepts NULL. */
void argv_free(char **argv);

/* Finds the command in a kernel command line: returns a pointer into cmdline
 * to the text after the first standalone "--" word, or NULL when there is no
 * such word or only blanks follow it. Words before it are split the way the
 * kernel does (blanks separate, double quotes group), so a "--" inside a
 * double-quoted parameter value is not the separator. */
const char *argv_find_command(const char *cmdline);

/* Looks up the kernel parameter key=value among the words before the first
 * standalone "--" (the kernel's own parameters). Copies the value without
 * surrounding double quotes, NUL-terminated, into val (val_size bytes). When
 * the key appears more than once, the last one wins. Returns 0, -ENOENT when
 * absent (a bare "key" without '=' counts as absent), -ENOSPC when the value
 * does not fit, -EINVAL for an empty key or val_size 0. */
int argv_get_param(const char *cmdline, const char *key, char *val, size_t val_size);

#endif
