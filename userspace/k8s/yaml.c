// SPDX-License-Identifier: Apache-2.0
/*
 * YAML (and JSON) streams into json-c objects, the way Kubernetes tooling
 * reads manifests: libyaml's event parser, one json value per document,
 * plain scalars typed with the YAML 1.1 rules go-yaml applies (so `80` is a
 * number, `"80"` a string, `true`/`yes` a bool, `~` null), anchors and
 * aliases and `<<` merge keys resolved, `kind: *List` documents flattened.
 *
 * Aliases share the aliased node (a refcount), so building is cheap; but
 * everything after (the content hash, the decoders) walks the expanded
 * tree, which a few hundred bytes of nested aliases make billions of nodes
 * large (the "billion laughs"). So every node carries its expanded size,
 * and a document whose aliases add more than ALIAS_NODES_MIN nodes and
 * more than ALIAS_RATIO times its own nodes is refused: the expanded tree
 * stays linear in the input. Only that document is skipped; the rest of the stream
 * still converts.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <search.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "k8s/manifests.h"
#include "k8s/objects.h"

/* Deeper nesting than this is not a Kubernetes object; refuse it. */
#define MAX_DEPTH 128
#define MAX_ANCHORS 4096
/* Nodes that aliases may add to one document regardless of its size; past
 * this, at most ALIAS_RATIO times the document's own nodes (events). A
 * Kubernetes object (at most 1.5 MB in etcd) that shares labels or ports
 * through anchors stays far below; 9 levels of 9 aliases (a 470-byte
 * bomb) reach 387M. */
#define ALIAS_NODES_MIN (1u << 18)
#define ALIAS_RATIO 8

struct anchor {
	struct json_object *val;
	size_t size; /* expanded nodes */
	char name[];
};

struct frame {
	struct json_object *node; /* object or array being filled */
	char *key;		  /* object: pending key, NULL when none */
	bool merge_key;		  /* pending key is "<<" */
	char *anchor;		  /* anchor to bind when the node closes */
	size_t size;		  /* expanded nodes so far, itself included */
};

struct builder {
	struct frame stack[MAX_DEPTH];
	int depth;
	void *anchors; /* tsearch tree of struct anchor, by name */
	size_t n_anchors;
	struct json_object *root;
	bool have_root;
	size_t doc;	    /* documents started, 1-based */
	size_t nodes;	    /* nodes of this document's own events */
	size_t alias_nodes; /* nodes its aliases added */
	bool skip_doc;	    /* refused: drop events until its end */
	kpx_yaml_doc_err_fn on_doc_err;
	void *arg;
	char *err;
	size_t errlen;
};

static bool is_plain(const yaml_event_t *ev)
{
	return ev->data.scalar.plain_implicit &&
	       ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool match_any(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (!strcmp(s, *words))
			return true;
	return false;
}

static const char *const null_words[] = { "", "~", "null", "Null", "NULL",
					  NULL };
static const char *const true_words[] = { "true", "True", "TRUE", "yes", "Yes",
					  "YES",  "on",	  "On",	  "ON",	 NULL };
static const char *const false_words[] = { "false", "False", "FALSE", "no",
					   "No",    "NO",    "off",   "Off",
					   "OFF",   NULL };

/* Integer per YAML 1.1 (decimal, 0x, 0o, 0b; '_' separators). */
static bool scalar_int(const char *s, int64_t *out)
{
	char buf[96], *end;
	size_t j = 0;
	int base = 10;
	const char *p = s;
	bool neg = false;
	long long v;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!*p)
		return false;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	} else if (p[0] == '0' && p[1] == 'o') {
		base = 8;
		p += 2;
	} else if (p[0] == '0' && p[1] == 'b') {
		base = 2;
		p += 2;
	}
	if (!*p)
		return false;
	if (neg)
		buf[j++] = '-';
	for (; *p; p++) {
		if (*p == '_')
			continue;
		if (j + 1 >= sizeof(buf))
			return false;
		buf[j++] = *p;
	}
	buf[j] = '\0';
	for (size_t i = neg; i < j; i++) {
		char c = buf[i];
		bool ok = base == 16 ? ((c >= '0' && c <= '9') ||
					((c | 0x20) >= 'a' && (c | 0x20) <= 'f')) :
				       (c >= '0' && c < '0' + base);
		if (!ok)
			return false;
	}
	errno = 0;
	v = strtoll(buf, &end, base);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool scalar_float(const char *s, double *out)
{
	const char *p = s;
	char *end;
	bool digits = false;

	if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") ||
	    !strcmp(s, "+.inf") || !strcmp(s, "+.Inf") || !strcmp(s, "+.INF")) {
		*out = INFINITY;
		return true;
	}
	if (!strcmp(s, "-.inf") || !strcmp(s, "-.Inf") || !strcmp(s, "-.INF")) {
		*out = -INFINITY;
		return true;
	}
	if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
		*out = NAN;
		return true;
	}
	/* [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE][-+]?[0-9]+ )? */
	if (*p == '+' || *p == '-')
		p++;
	while (*p >= '0' && *p <= '9') {
		p++;
		digits = true;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			p++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p)
		return false;
	*out = strtod(s, &end);
	return *end == '\0';
}

/* Numbers (.inf and .nan included) start with a digit, sign or dot. */
static bool maybe_number(char c)
{
	return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

/* The null/bool words above: at most 5 characters, these initials. */
static bool maybe_word(const char *s, size_t len)
{
	return len == 0 || (len <= 5 && strchr("~nNtTyYoOfF", s[0]));
}

/*
 * True when the scalar resolves to a string without trying any rule:
 * quoted or block, or plain but neither a null/bool word nor starting like
 * a number. Most scalars of a manifest are keys and names.
 */
static bool plain_string(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.tag)
		return false;
	if (!is_plain(ev))
		return true;
	return !maybe_word(s, ev->data.scalar.length) && !maybe_number(s[0]);
}

static struct json_object *scalar_value(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	int64_t i;
	double f;

	if (plain_string(ev))
		return json_object_new_string_len(s, (int)len);
	if (tag) {
		if (!strcmp(tag, YAML_NULL_TAG))
			return NULL;
		if (!strcmp(tag, YAML_BOOL_TAG))
			return json_object_new_boolean(match_any(s, true_words));
		if (!strcmp(tag, YAML_INT_TAG) && scalar_int(s, &i))
			return json_object_new_int64(i);
		if (!strcmp(tag, YAML_FLOAT_TAG) && scalar_float(s, &f))
			return json_object_new_double(f);
		return json_object_new_string_len(s, (int)len);
	}
	/* Plain, and maybe a null/bool word or a number. */
	if (match_any(s, null_words))
		return NULL;
	if (match_any(s, true_words))
		return json_object_new_boolean(1);
	if (match_any(s, false_words))
		return json_object_new_boolean(0);
	if (scalar_int(s, &i))
		return json_object_new_int64(i);
	if (scalar_float(s, &f))
		return json_object_new_double(f);
	return json_object_new_string_len(s, (int)len);
}

static int berr(struct builder *b, const yaml_event_t *ev, const char *msg)
{
	snprintf(b->err, b->errlen, "line %zu: %s",
		 ev ? ev->start_mark.line + 1 : 0, msg);
	return -EINVAL;
}

static int cmp_anchor(const void *a, const void *b)
{
	return strcmp(((const struct anchor *)a)->name,
		      ((const struct anchor *)b)->name);
}

/* A tree, not a list: a stream of aliases to the first of 4096 anchors
 * must not cost 4096 compares each. */
static struct anchor *find_anchor(struct builder *b, const char *name)
{
	struct anchor *key;
	size_t n = strlen(name);
	void **p;

	key = malloc(sizeof(*key) + n + 1);
	if (!key)
		return NULL;
	memcpy(key->name, name, n + 1);
	p = tfind(key, &b->anchors, cmp_anchor);
	free(key);
	return p ? *p : NULL;
}

static int bind_anchor(struct builder *b, const yaml_event_t *ev,
		       const char *name, struct json_object *val, size_t size)
{
	struct anchor *a;
	size_t n;

	if (!name)
		return 0;
	a = find_anchor(b, name);
	if (a) {
		/* Redefinition: later aliases see the new value. */
		json_object_put(a->val);
		a->val = json_object_get(val);
		a->size = size;
		return 0;
	}
	if (b->n_anchors >= MAX_ANCHORS)
		return berr(b, ev, "too many anchors");
	n = strlen(name);
	a = malloc(sizeof(*a) + n + 1);
	if (!a)
		return berr(b, ev, "out of memory");
	memcpy(a->name, name, n + 1);
	a->val = json_object_get(val);
	a->size = size;
	if (!tsearch(a, &b->anchors, cmp_anchor)) {
		json_object_put(a->val);
		free(a);
		return berr(b, ev, "out of memory");
	}
	b->n_anchors++;
	return 0;
}

static void anchor_free(void *p)
{
	struct anchor *a = p;

	json_object_put(a->val);
	free(a);
}

static void clear_anchors(struct builder *b)
{
	tdestroy(b->anchors, anchor_free);
	b->anchors = NULL;
	b->n_anchors = 0;
}

/* `<<: {..}` or `<<: [{..}, ..]`: copy keys the mapping does not have. */
static int merge_into(struct builder *b, const yaml_event_t *ev,
		      struct json_object *dst, struct json_object *src)
{
	if (json_object_is_type(src, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(src); i++) {
			int rc = merge_into(b, ev, dst,
					    json_object_array_get_idx(src, i));
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!json_object_is_type(src, json_type_object))
		return berr(b, ev, "merge key value is not a mapping");
	json_object_object_foreach(src, k, v)
	{
		if (!json_object_object_get_ex(dst, k, NULL))
			json_object_object_add(dst, k, json_object_get(v));
	}
	return 0;
}

/* The mapping on top of the stack waits for its next key. */
static bool wants_key(const struct builder *b)
{
	const struct frame *f;

	if (b->depth == 0)
		return false;
	f = &b->stack[b->depth - 1];
	return !f->key && json_object_is_type(f->node, json_type_object);
}

static int set_key(struct builder *b, const yaml_event_t *ev, const char *key)
{
	struct frame *f = &b->stack[b->depth - 1];

	f->key = strdup(key);
	f->merge_key = ev->type == YAML_SCALAR_EVENT && is_plain(ev) &&
		       !strcmp((const char *)ev->data.scalar.value, "<<");
	return f->key ? 0 : berr(b, ev, "out of memory");
}

/* Adds a finished value (ownership passed) of size expanded nodes to the
 * current container. */
static int add_value(struct builder *b, const yaml_event_t *ev,
		     struct json_object *val, size_t size)
{
	struct frame *f;
	int rc = 0;

	if (b->depth > 0)
		b->stack[b->depth - 1].size += size;
	if (b->depth == 0) {
		b->root = val;
		b->have_root = true;
		return 0;
	}
	f = &b->stack[b->depth - 1];
	if (json_object_is_type(f->node, json_type_array)) {
		json_object_array_add(f->node, val);
		return 0;
	}
	if (!f->key) {
		/* A mapping key: must be a scalar. */
		if (val && (json_object_is_type(val, json_type_object) ||
			    json_object_is_type(val, json_type_array))) {
			json_object_put(val);
			return berr(b, ev, "complex mapping keys are not supported");
		}
		rc = set_key(b, ev, val ? json_object_get_string(val) : "null");
		json_object_put(val);
		return rc;
	}
	if (f->merge_key) {
		rc = merge_into(b, ev, f->node, val);
		json_object_put(val);
	} else {
		json_object_object_add(f->node, f->key, val);
	}
	free(f->key);
	f->key = NULL;
	f->merge_key = false;
	return rc;
}

static int push(struct builder *b, const yaml_event_t *ev,
		struct json_object *node, const yaml_char_t *anchor)
{
	struct frame *f;

	if (!node)
		return berr(b, ev, "out of memory");
	if (b->depth >= MAX_DEPTH) {
		json_object_put(node);
		return berr(b, ev, "nesting too deep");
	}
	f = &b->stack[b->depth++];
	memset(f, 0, sizeof(*f));
	f->node = node;
	f->size = 1;
	if (anchor) {
		f->anchor = strdup((const char *)anchor);
		if (!f->anchor)
			return berr(b, ev, "out of memory");
	}
	return 0;
}

static int pop(struct builder *b, const yaml_event_t *ev)
{
	struct frame *f = &b->stack[--b->depth];
	struct json_object *node = f->node;
	size_t size = f->size;
	int rc;

	if (f->key) {
		free(f->key);
		f->key = NULL;
	}
	rc = bind_anchor(b, ev, f->anchor, node, size);
	free(f->anchor);
	f->anchor = NULL;
	if (rc) {
		json_object_put(node);
		return rc;
	}
	return add_value(b, ev, node, size);
}

static void reset_stack(struct builder *b)
{
	while (b->depth > 0) {
		struct frame *f = &b->stack[--b->depth];

		free(f->key);
		free(f->anchor);
		json_object_put(f->node);
	}
}

/* Where finished documents go: an array, or one by one to a callback (a
 * big multi-document file then never holds all its trees at once). */
struct sink {
	struct json_object *arr;
	kpx_yaml_doc_fn fn;
	void *arg;
};

static void emit(struct sink *s, struct json_object *doc)
{
	if (s->fn) {
		s->fn(s->arg, doc);
		json_object_put(doc);
	} else {
		json_object_array_add(s->arr, doc);
	}
}

/* `kind: List` (and `ServiceList` etc.) with items[]: append the items. */
static void append_doc(struct sink *docs, struct json_object *doc, int level)
{
	struct json_object *kind, *items;
	const char *k;
	size_t kl;

	if (level < 4 && json_object_is_type(doc, json_type_object) &&
	    json_object_object_get_ex(doc, "kind", &kind) &&
	    json_object_is_type(kind, json_type_string) &&
	    json_object_object_get_ex(doc, "items", &items) &&
	    (json_object_is_type(items, json_type_array) || !items)) {
		k = json_object_get_string(kind);
		kl = strlen(k);
		if (kl >= 4 && !strcmp(k + kl - 4, "List")) {
			for (size_t i = 0; items && i < json_object_array_length(items);
			     i++)
				append_doc(docs,
					   json_object_get(json_object_array_get_idx(
						   items, i)),
					   level + 1);
			json_object_put(doc);
			return;
		}
	}
	emit(docs, doc);
}

/*
 * Refuses the current document: its partial tree is dropped and its
 * remaining events are skipped. Reported through on_doc_err when the
 * caller takes per-document errors, else the whole stream fails.
 */
static int refuse_doc(struct builder *b, const yaml_event_t *ev,
		      const char *why)
{
	char ref[KPX_NS_MAX + KPX_NAME_MAX + 2] = "", msg[512];
	struct json_object *top = b->depth ? b->stack[0].node : b->root;

	if (json_object_is_type(top, json_type_object) &&
	    json_object_object_get_ex(top, "metadata", NULL))
		kpx_object_ref(top, ref, sizeof(ref));
	snprintf(msg, sizeof(msg), "document %zu%s%s%s: line %zu: %s", b->doc,
		 ref[0] ? " (" : "", ref, ref[0] ? ")" : "",
		 ev->start_mark.line + 1, why);
	if (!b->on_doc_err) {
		snprintf(b->err, b->errlen, "%s", msg);
		return -E2BIG;
	}
	b->on_doc_err(b->arg, msg);
	reset_stack(b);
	if (b->have_root)
		json_object_put(b->root);
	b->root = NULL;
	b->have_root = false;
	b->skip_doc = true;
	return 0;
}

/* An alias adds its anchor's expanded size to the document. */
static int count_alias(struct builder *b, const yaml_event_t *ev,
		       const struct anchor *a)
{
	size_t budget = ALIAS_RATIO * b->nodes;
	char why[160];

	if (budget < ALIAS_NODES_MIN)
		budget = ALIAS_NODES_MIN;
	if (a->size <= budget && b->alias_nodes <= budget - a->size) {
		b->alias_nodes += a->size;
		return 0;
	}
	snprintf(why, sizeof(why),
		 "aliases expand to more than %zu nodes (an alias bomb?); document skipped",
		 budget);
	return refuse_doc(b, ev, why);
}

static int parse_yaml(const char *buf, size_t len, struct sink *docs,
		      char *err, size_t errlen, kpx_yaml_doc_err_fn on_doc_err,
		      void *arg)
{
	struct builder b = { .err = err, .errlen = errlen,
			     .on_doc_err = on_doc_err, .arg = arg };
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int rc = 0;

	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (!done && !rc) {
		if (!yaml_parser_parse(&parser, &ev)) {
			snprintf(err, errlen, "line %zu: %s%s%s",
				 parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "parse error",
				 parser.context ? " " : "",
				 parser.context ? parser.context : "");
			rc = -EINVAL;
			break;
		}
		if (b.skip_doc && ev.type != YAML_DOCUMENT_END_EVENT &&
		    ev.type != YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (ev.type >= YAML_ALIAS_EVENT)
			b.nodes++;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			b.root = NULL;
			b.have_root = false;
			b.doc++;
			b.nodes = 0;
			b.alias_nodes = 0;
			break;
		case YAML_DOCUMENT_END_EVENT:
			/* Empty documents (only comments, a bare ---) are
			 * not objects; kubectl skips them too. */
			if (b.have_root && b.root)
				append_doc(docs, b.root, 0);
			b.root = NULL;
			b.have_root = false;
			b.skip_doc = false;
			clear_anchors(&b);
			break;
		case YAML_MAPPING_START_EVENT:
			rc = push(&b, &ev, json_object_new_object(),
				  ev.data.mapping_start.anchor);
			break;
		case YAML_SEQUENCE_START_EVENT:
			rc = push(&b, &ev, json_object_new_array(),
				  ev.data.sequence_start.anchor);
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			rc = pop(&b, &ev);
			break;
		case YAML_SCALAR_EVENT: {
			struct json_object *v;

			/* Most keys: no json string to make and drop. */
			if (!ev.data.scalar.anchor && wants_key(&b) &&
			    plain_string(&ev)) {
				rc = set_key(&b, &ev,
					     (const char *)ev.data.scalar.value);
				break;
			}
			v = scalar_value(&ev);

			rc = bind_anchor(&b, &ev,
					 (const char *)ev.data.scalar.anchor, v,
					 1);
			if (rc)
				json_object_put(v);
			else
				rc = add_value(&b, &ev, v, 1);
			break;
		}
		case YAML_ALIAS_EVENT: {
			const char *name = (const char *)ev.data.alias.anchor;
			struct anchor *a = find_anchor(&b, name);

			if (!a) {
				char msg[160];

				snprintf(msg, sizeof(msg),
					 "unknown anchor \"%.100s\"", name);
				rc = berr(&b, &ev, msg);
				break;
			}
			/*
			 * Aliases share the node (refcount), which is safe
			 * because the tree is never modified after building,
			 * except when merged into a mapping, which copies
			 * keys by reference too and does not mutate src.
			 */
			rc = count_alias(&b, &ev, a);
			if (!rc && !b.skip_doc)
				rc = add_value(&b, &ev, json_object_get(a->val),
					       a->size);
			break;
		}
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	reset_stack(&b);
	if (rc && b.have_root)
		json_object_put(b.root);
	clear_anchors(&b);
	yaml_parser_delete(&parser);
	return rc;
}

/*
 * JSON files (e.g. `kubectl get -o json`) take json-c's parser: faster on
 * big dumps, and exact on JSON's number typing. A JSON stream that fails
 * here is re-parsed as YAML, whose error carries a line number.
 */
static int try_json(const char *buf, size_t len, struct sink *docs)
{
	struct json_tokener *tok;
	struct json_object *list;
	size_t off = 0, n = 0;
	int rc = 0;

	while (off < len && strchr(" \t\r\n", buf[off]))
		off++;
	if (off == len || (buf[off] != '{' && buf[off] != '['))
		return -EINVAL;
	tok = json_tokener_new();
	list = json_object_new_array();
	if (!tok || !list) {
		json_tokener_free(tok);
		json_object_put(list);
		return -ENOMEM;
	}
	while (off < len) {
		struct json_object *o;

		while (off < len && strchr(" \t\r\n", buf[off]))
			off++;
		if (off == len)
			break;
		if (len - off > (size_t)INT32_MAX) {
			rc = -EINVAL;
			break;
		}
		json_tokener_reset(tok);
		o = json_tokener_parse_ex(tok, buf + off, (int)(len - off));
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(o);
			rc = -EINVAL;
			break;
		}
		off += json_tokener_get_parse_end(tok);
		json_object_array_add(list, o);
		n++;
	}
	json_tokener_free(tok);
	if (!rc) {
		for (size_t i = 0; i < n; i++) {
			struct json_object *o = json_object_array_get_idx(list,
									  i);
			/* A top-level JSON array is a list of objects. */
			if (json_object_is_type(o, json_type_array)) {
				for (size_t j = 0; j < json_object_array_length(o);
				     j++)
					append_doc(docs,
						   json_object_get(
							   json_object_array_get_idx(
								   o, j)),
						   0);
			} else if (o) {
				append_doc(docs, json_object_get(o), 0);
			}
		}
	}
	json_object_put(list);
	return rc;
}

/* Everything is handed to sink or an error is returned with err set. */
static int convert(const char *buf, size_t len, struct sink *sink, char *err,
		   size_t errlen, kpx_yaml_doc_err_fn on_doc_err, void *arg)
{
	char dummy[1];
	int rc;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	/* try_json hands nothing over unless the whole stream parsed. */
	rc = try_json(buf, len, sink);
	if (rc == -ENOMEM) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	if (rc)
		rc = parse_yaml(buf, len, sink, err, errlen, on_doc_err, arg);
	return rc;
}

int kpx_yaml_to_json(const char *buf, size_t len, struct json_object **docs,
		     char *err, size_t errlen)
{
	return kpx_yaml_to_json_ex(buf, len, docs, err, errlen, NULL, NULL);
}

int kpx_yaml_to_json_ex(const char *buf, size_t len, struct json_object **docs,
			char *err, size_t errlen,
			kpx_yaml_doc_err_fn on_doc_err, void *arg)
{
	struct sink sink = { .arr = json_object_new_array() };
	int rc;

	*docs = NULL;
	if (!sink.arr) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = convert(buf, len, &sink, err, errlen, on_doc_err, arg);
	if (rc) {
		json_object_put(sink.arr);
		return rc;
	}
	*docs = sink.arr;
	return 0;
}

int kpx_yaml_each_doc(const char *buf, size_t len, kpx_yaml_doc_fn fn,
		      void *fn_arg, char *err, size_t errlen,
		      kpx_yaml_doc_err_fn on_doc_err, void *arg)
{
	struct sink sink = { .fn = fn, .arg = fn_arg };

	return convert(buf, len, &sink, err, errlen, on_doc_err, arg);
}
