/* log.h - leveled logging to stderr for every kiln program. */
#ifndef KILN_COMMON_LOG_H
#define KILN_COMMON_LOG_H

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3,
};

/* Sets the program name printed before every message ("kiln-vmm"). The
 * string is not copied: it must outlive all logging (a literal or argv[0]). */
void log_set_program(const char *name);

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(enum log_level level);

/* Returns the current level. */
enum log_level log_get_level(void);

/* Caps stderr at max bytes when it is a regular file (a VMM's log that a
 * guest could make grow with warnings): past it the file is emptied and
 * restarts with a marker line (common/capfile.h). 0: no cap (the default).
 * Call before other threads log. */
void log_cap_file(unsigned long long max);

/* Prints "program: level: message\n" to stderr as one write(2), so lines
 * from different threads never interleave. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
