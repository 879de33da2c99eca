/* metrics.c - kilnd's metrics in Prometheus' text exposition format 0.0.4.
 *
 * Families live in a singly linked list in declaration order, each with its
 * series in creation order, so rendering is deterministic. One mutex guards
 * everything; the lists are short (one series per function and label tuple),
 * so lookups are linear.
 */
#include "daemon/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* Upper limits that keep one family's rendering sane. */
#define MAX_BUCKETS	64
#define MAX_NAME_LEN	200
#define MAX_HELP_LEN	1024
#define MAX_LABEL_VALUE 1024

struct series {
	char *values[METRICS_MAX_LABELS];
	double value;	  /* counter, gauge */
	uint64_t *counts; /* histogram: per bucket (not cumulative), nbuckets + 1 (+Inf) */
	double sum;
	uint64_t count;
	struct series *next;
};

struct family {
	char *name;
	char *help;
	enum metrics_type type;
	size_t nlabels;
	char *labels[METRICS_MAX_LABELS];
	double *bounds;
	size_t nbuckets;
	struct series *series, **series_tail;
	struct family *next;
};

struct metrics {
	pthread_mutex_t lock;
	struct family *families, **families_tail;
};

/* ---- names ----------------------------------------------------------------- */

static int name_char(char c, int first, int colon_ok)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return 1;
	if (c == ':')
		return colon_ok;
	return !first && c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*,
 * not starting with "__" (reserved by Prometheus). */
static int valid_name(const char *s, int is_label)
{
	size_t i;

	if (!s || !*s || strlen(s) > MAX_NAME_LEN)
		return 0;
	for (i = 0; s[i]; i++) {
		if (!name_char(s[i], i == 0, !is_label))
			return 0;
	}
	if (is_label && s[0] == '_' && s[1] == '_')
		return 0;
	return 1;
}

/* ---- allocation -------------------------------------------------------------- */

static void series_free(struct series *s, size_t nlabels)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < nlabels; i++)
		free(s->values[i]);
	free(s->counts);
	free(s);
}

static void family_free(struct family *f)
{
	struct series *s, *next;
	size_t i;

	if (!f)
		return;
	for (s = f->series; s; s = next) {
		next = s->next;
		series_free(s, f->nlabels);
	}
	for (i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f->bounds);
	free(f);
}

struct metrics *metrics_create(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (pthread_mutex_init(&m->lock, NULL) != 0) {
		free(m);
		return NULL;
	}
	m->families_tail = &m->families;
	return m;
}

void metrics_destroy(struct metrics *m)
{
	struct family *f, *next;

	if (!m)
		return;
	for (f = m->families; f; f = next) {
		next = f->next;
		family_free(f);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static struct family *family_find(struct metrics *m, const char *name)
{
	struct family *f;

	for (f = m->families; f; f = f->next) {
		if (strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

/* A new series with copies of values (nlabels of them, already checked). */
static struct series *series_new(struct family *f, const char *const *values)
{
	struct series *s = calloc(1, sizeof(*s));
	size_t i;

	if (!s)
		return NULL;
	for (i = 0; i < f->nlabels; i++) {
		s->values[i] = strdup(values[i]);
		if (!s->values[i])
			goto free_series;
	}
	if (f->type == METRICS_HISTOGRAM) {
		s->counts = calloc(f->nbuckets + 1, sizeof(*s->counts));
		if (!s->counts)
			goto free_series;
	}
	return s;

free_series:
	series_free(s, f->nlabels);
	return NULL;
}

static void series_link(struct family *f, struct series *s)
{
	*f->series_tail = s;
	f->series_tail = &s->next;
}

int metrics_declare(struct metrics *m, const char *name, enum metrics_type type, const char *help,
		    const char *const *labels, const double *buckets, size_t nbuckets)
{
	struct family *f;
	struct series *s;
	size_t i, j, nlabels = 0;
	int ret = 0;

	if (!m || !valid_name(name, 0))
		return -EINVAL;
	if (type != METRICS_COUNTER && type != METRICS_GAUGE && type != METRICS_HISTOGRAM)
		return -EINVAL;
	if (help && strlen(help) > MAX_HELP_LEN)
		return -EINVAL;
	while (labels && labels[nlabels]) {
		if (nlabels == METRICS_MAX_LABELS || !valid_name(labels[nlabels], 1))
			return -EINVAL;
		if (type == METRICS_HISTOGRAM && strcmp(labels[nlabels], "le") == 0)
			return -EINVAL;
		for (j = 0; j < nlabels; j++) {
			if (strcmp(labels[j], labels[nlabels]) == 0)
				return -EINVAL;
		}
		nlabels++;
	}
	if (type != METRICS_HISTOGRAM && nbuckets)
		return -EINVAL;
	if (nbuckets > MAX_BUCKETS || (nbuckets && !buckets))
		return -EINVAL;
	for (i = 0; i < nbuckets; i++) {
		if (!isfinite(buckets[i]) || (i && !(buckets[i] > buckets[i - 1])))
			return -EINVAL;
	}

	pthread_mutex_lock(&m->lock);
	if (family_find(m, name))
		goto unlock;
	ret = -ENOMEM;
	f = calloc(1, sizeof(*f));
	if (!f)
		goto unlock;
	f->series_tail = &f->series;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (!f->name || !f->help)
		goto free_family;
	for (i = 0; i < nlabels; i++) {
		f->labels[i] = strdup(labels[i]);
		if (!f->labels[i])
			goto free_family;
		f->nlabels++;
	}
	if (nbuckets) {
		f->bounds = malloc(nbuckets * sizeof(*f->bounds));
		if (!f->bounds)
			goto free_family;
		memcpy(f->bounds, buckets, nbuckets * sizeof(*f->bounds));
		f->nbuckets = nbuckets;
	}
	/* A family without labels has its one series from the start, so it is
	 * exposed as 0 before anything happens (as client libraries do). */
	if (nlabels == 0) {
		s = series_new(f, NULL);
		if (!s)
			goto free_family;
		series_link(f, s);
	}
	*m->families_tail = f;
	m->families_tail = &f->next;
	ret = 0;
	goto unlock;

free_family:
	family_free(f);
unlock:
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/* Finds (or creates) the series of family `name` with these label values,
 * checking the family's type is `type`. Called with the lock held. */
static int series_get(struct metrics *m, const char *name, enum metrics_type type,
		      const char *const *values, struct family **fout, struct series **out)
{
	struct family *f = family_find(m, name);
	struct series *s;
	size_t i;

	if (!f)
		return -ENOENT;
	if (f->type != type)
		return -EINVAL;
	for (i = 0; i < f->nlabels; i++) {
		if (!values || !values[i] || strlen(values[i]) > MAX_LABEL_VALUE)
			return -EINVAL;
	}
	for (s = f->series; s; s = s->next) {
		for (i = 0; i < f->nlabels; i++) {
			if (strcmp(s->values[i], values[i]) != 0)
				break;
		}
		if (i == f->nlabels)
			goto found;
	}
	s = series_new(f, values);
	if (!s)
		return -ENOMEM;
	series_link(f, s);
found:
	*fout = f;
	*out = s;
	return 0;
}

static int update(struct metrics *m, const char *name, const char *const *values, double v, int op)
{
	enum metrics_type type = op == 'o' ? METRICS_HISTOGRAM : METRICS_GAUGE;
	struct family *f;
	struct series *s;
	size_t i;
	int ret;

	if (!m || !name)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (op == 'a') {
		/* metrics_add serves counters and gauges. */
		f = family_find(m, name);
		if (f && f->type == METRICS_COUNTER)
			type = METRICS_COUNTER;
	}
	if (type == METRICS_COUNTER && !(v >= 0)) {
		ret = -EINVAL; /* negative or NaN */
		goto unlock;
	}
	if (type == METRICS_HISTOGRAM && isnan(v)) {
		ret = -EINVAL;
		goto unlock;
	}
	ret = series_get(m, name, type, values, &f, &s);
	if (ret)
		goto unlock;
	switch (op) {
	case 'a':
		s->value += v;
		break;
	case 's':
		s->value = v;
		break;
	default:
		for (i = 0; i < f->nbuckets && v > f->bounds[i]; i++)
			;
		s->counts[i]++;
		s->sum += v;
		s->count++;
		break;
	}
unlock:
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int metrics_add(struct metrics *m, const char *name, const char *const *values, double v)
{
	return update(m, name, values, v, 'a');
}

int metrics_set(struct metrics *m, const char *name, const char *const *values, double v)
{
	return update(m, name, values, v, 's');
}

int metrics_observe(struct metrics *m, const char *name, const char *const *values, double v)
{
	return update(m, name, values, v, 'o');
}

void metrics_forget(struct metrics *m, const char *label, const char *value)
{
	struct family *f;
	struct series **pp, *s;
	size_t i;

	if (!m || !label || !value)
		return;
	pthread_mutex_lock(&m->lock);
	for (f = m->families; f; f = f->next) {
		for (i = 0; i < f->nlabels; i++) {
			if (strcmp(f->labels[i], label) == 0)
				break;
		}
		if (i == f->nlabels)
			continue;
		pp = &f->series;
		while ((s = *pp)) {
			if (strcmp(s->values[i], value) == 0) {
				*pp = s->next;
				series_free(s, f->nlabels);
			} else {
				pp = &s->next;
			}
		}
		f->series_tail = pp;
	}
	pthread_mutex_unlock(&m->lock);
}

/* ---- rendering ------------------------------------------------------------------ */

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void buf_grow(struct buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom || b->len + n + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void buf_put(struct buf *b, const char *s, size_t n)
{
	buf_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* Appends s escaped: \ and newline always, " too in label values; invalid
 * UTF-8 becomes U+FFFD so the exposition stays valid UTF-8. */
static void buf_escaped(struct buf *b, const char *s, int quote)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, l;

	while (i < n) {
		if (u[i] == '\\') {
			buf_put(b, "\\\\", 2);
			i++;
		} else if (u[i] == '\n') {
			buf_put(b, "\\n", 2);
			i++;
		} else if (u[i] == '"' && quote) {
			buf_put(b, "\\\"", 2);
			i++;
		} else if ((l = utf8_decode(u + i, n - i, NULL)) != 0) {
			buf_put(b, s + i, l);
			i += l;
		} else {
			buf_put(b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
}

/* Formats v the way Prometheus parses it: NaN, +Inf, -Inf, integral values
 * without exponent or fraction, others with the fewest digits that read back
 * as the same double. */
static void fmt_double(char out[64], double v)
{
	int prec;

	if (isnan(v)) {
		strcpy(out, "NaN");
	} else if (isinf(v)) {
		strcpy(out, v > 0 ? "+Inf" : "-Inf");
	} else if (v == 0) {
		strcpy(out, "0");
	} else if (v > -1e18 && v < 1e18 && v == (double)(long long)v) {
		/* (no libm: the daemon does not link it) */
		snprintf(out, 64, "%lld", (long long)v);
	} else {
		for (prec = 1; prec <= 17; prec++) {
			snprintf(out, 64, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
}

static void buf_double(struct buf *b, double v)
{
	char num[64];

	fmt_double(num, v);
	buf_str(b, num);
}

static void buf_u64(struct buf *b, uint64_t v)
{
	char num[32];

	snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
	buf_str(b, num);
}

/* Writes `{a="x",b="y"` plus an optional le label, then `}`; nothing when
 * there are no labels at all. */
static void buf_labels(struct buf *b, const struct family *f, const struct series *s,
		       const char *le)
{
	size_t i;

	if (f->nlabels == 0 && !le)
		return;
	buf_put(b, "{", 1);
	for (i = 0; i < f->nlabels; i++) {
		if (i)
			buf_put(b, ",", 1);
		buf_str(b, f->labels[i]);
		buf_put(b, "=\"", 2);
		buf_escaped(b, s->values[i], 1);
		buf_put(b, "\"", 1);
	}
	if (le) {
		if (f->nlabels)
			buf_put(b, ",", 1);
		buf_put(b, "le=\"", 4);
		buf_str(b, le);
		buf_put(b, "\"", 1);
	}
	buf_put(b, "}", 1);
}

static void render_histogram(struct buf *b, const struct family *f, const struct series *s)
{
	char le[64];
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i <= f->nbuckets; i++) {
		cum += s->counts[i];
		if (i < f->nbuckets)
			fmt_double(le, f->bounds[i]);
		else
			strcpy(le, "+Inf");
		buf_str(b, f->name);
		buf_str(b, "_bucket");
		buf_labels(b, f, s, le);
		buf_put(b, " ", 1);
		buf_u64(b, cum);
		buf_put(b, "\n", 1);
	}
	buf_str(b, f->name);
	buf_str(b, "_sum");
	buf_labels(b, f, s, NULL);
	buf_put(b, " ", 1);
	buf_double(b, s->sum);
	buf_put(b, "\n", 1);
	buf_str(b, f->name);
	buf_str(b, "_count");
	buf_labels(b, f, s, NULL);
	buf_put(b, " ", 1);
	buf_u64(b, s->count);
	buf_put(b, "\n", 1);
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
	static const char *const type_names[] = {
		[METRICS_COUNTER] = "counter",
		[METRICS_GAUGE] = "gauge",
		[METRICS_HISTOGRAM] = "histogram",
	};
	struct buf b = {0};
	struct family *f;
	struct series *s;

	if (!m || !out || !len)
		return -EINVAL;
	buf_grow(&b, 0); /* an empty set renders as "" */
	pthread_mutex_lock(&m->lock);
	for (f = m->families; f; f = f->next) {
		buf_str(&b, "# HELP ");
		buf_str(&b, f->name);
		buf_put(&b, " ", 1);
		buf_escaped(&b, f->help, 0);
		buf_str(&b, "\n# TYPE ");
		buf_str(&b, f->name);
		buf_put(&b, " ", 1);
		buf_str(&b, type_names[f->type]);
		buf_put(&b, "\n", 1);
		for (s = f->series; s; s = s->next) {
			if (f->type == METRICS_HISTOGRAM) {
				render_histogram(&b, f, s);
				continue;
			}
			buf_str(&b, f->name);
			buf_labels(&b, f, s, NULL);
			buf_put(&b, " ", 1);
			buf_double(&b, s->value);
			buf_put(&b, "\n", 1);
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	b.p[b.len] = '\0';
	*out = b.p;
	*len = b.len;
	return 0;
}
