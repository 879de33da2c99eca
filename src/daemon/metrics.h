/* metrics.h - kilnd's metrics, rendered in Prometheus' text format 0.0.4.
 *
 * A `struct metrics` holds named families (counter, gauge, histogram), each
 * with up to 4 label names, and its series (one per label-value tuple,
 * created on first use). Every function is thread-safe (one mutex).
 * Family and label names must be Prometheus names ([a-zA-Z_:][a-zA-Z0-9_:]*
 * for families; [a-zA-Z_][a-zA-Z0-9_]* not starting with "__" for labels,
 * and no "le" on histograms); label values are escaped when rendered
 * (\\, \", \n; invalid UTF-8 becomes U+FFFD). Output order is
 * deterministic: families in declaration order, series in creation order.
 * A family without labels has its single series from the start (rendered
 * as 0 before any update). Numbers: integral values without exponent
 * ("4294967296"), others with the fewest digits that read back exactly,
 * NaN, +Inf, -Inf.
 */
#ifndef KILN_DAEMON_METRICS_H
#define KILN_DAEMON_METRICS_H

#include <stddef.h>

struct metrics;

enum metrics_type {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
};

#define METRICS_MAX_LABELS 4

/* Returns a new empty set, or NULL when out of memory. */
struct metrics *metrics_create(void);

/* Frees everything. Accepts NULL. */
void metrics_destroy(struct metrics *m);

/* Declares a family. labels is a NULL-terminated list of label names (NULL
 * for none); buckets (histograms only) the ascending upper bounds, nbuckets
 * of them (+Inf is implicit). Declaring an existing name again is a no-op
 * returning 0. Returns 0, -EINVAL (bad name, too many labels, buckets not
 * ascending), or -ENOMEM. */
int metrics_declare(struct metrics *m, const char *name, enum metrics_type type,
		    const char *help, const char *const *labels, const double *buckets,
		    size_t nbuckets);

/* Adds v to a counter or gauge series; label values in declaration order
 * (as many as the family has). Returns 0, -ENOENT (undeclared), -EINVAL
 * (wrong type, negative for a counter), or -ENOMEM. */
int metrics_add(struct metrics *m, const char *name, const char *const *values, double v);

/* Sets a gauge series. Same returns. */
int metrics_set(struct metrics *m, const char *name, const char *const *values, double v);

/* Records one observation in a histogram series (v <= bound counts in that
 * bucket). Same returns (NaN is -EINVAL). */
int metrics_observe(struct metrics *m, const char *name, const char *const *values, double v);

/* Drops every series of every family whose label `label` equals value (a
 * removed function's series). Families without that label are untouched. */
void metrics_forget(struct metrics *m, const char *label, const char *value);

/* Renders everything (# HELP, # TYPE, series; histograms as _bucket with le,
 * _sum, _count) into a malloc'd NUL-terminated string (*out, caller frees)
 * of *len bytes. Returns 0 or -ENOMEM. */
int metrics_render(struct metrics *m, char **out, size_t *len);

#endif
