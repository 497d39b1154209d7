/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The manifests source: every *.yaml, *.yml, *.json in a directory
 * (multi-document YAML, `kind: List`), decoded with the same validators
 * as the API source, re-read on change through inotify: only the files
 * that changed, a full listing when the events are unclear. An object in
 * several files: the file last in name order wins. A file that fails to
 * read or parse keeps the objects of its last good read (manifests.c has
 * the rules). YAML is parsed with libyaml into json-c objects.
 * Owns: the inotify fd, the per-file index of provided objects.
 * Must not: interpret objects beyond decoding.
 */
#ifndef KPX_MANIFESTS_H
#define KPX_MANIFESTS_H

#include <stddef.h>

struct kpx_loop;
struct kpx_store;
struct json_object;
struct kpx_manifests_source;

typedef void (*kpx_change_fn)(void *arg);

/*
 * Loads DIR into store once (replace semantics for services and slices,
 * both then marked synced). Bad objects are logged with file and
 * namespace/name and skipped. Returns 0, or a negative errno when DIR
 * cannot be read at all. n_errors (may be NULL) counts skipped objects.
 */
int kpx_manifests_load(const char *dir, struct kpx_store *store,
		       size_t *n_errors);
/* This node's name: a Node object of that name in DIR is loaded (its zone
 * label enables topology hints); other Nodes are ignored. */
void kpx_manifests_set_node(const char *name);
/* Loads, then watches DIR; on_change runs after each re-read changed the
 * store. Re-reads are per changed file (a full listing on inotify
 * overflow or when the directory itself is replaced). */
int kpx_manifests_open(struct kpx_loop *loop, const char *dir,
		       struct kpx_store *store, kpx_change_fn on_change,
		       void *arg, struct kpx_manifests_source **out);
void kpx_manifests_close(struct kpx_manifests_source *src);
/* {"kind":"manifests","dir":...,"files":N,"objects":N,"errors":N,
 *  "loads":N,"last_load":...,"last_files_read":N,"last_full_listing":B}
 * (files, objects, errors: totals over the directory) */
struct json_object *kpx_manifests_status(const struct kpx_manifests_source *src);

/*
 * Parses a YAML or JSON stream into an array of json-c objects, one per
 * document (`kind: List` items are flattened). Returns 0 or -EINVAL with a
 * reason (including the line) in err.
 */
int kpx_yaml_to_json(const char *buf, size_t len, struct json_object **docs,
		     char *err, size_t errlen);
/*
 * The same, but a document that cannot be built safely (its aliases
 * expand to far more nodes than the document has: an alias bomb) is left
 * out of docs and reported through on_doc_err with its position and, when
 * known, its namespace/name; the other documents still convert. Without
 * on_doc_err such a document fails the whole stream (-E2BIG).
 */
typedef void (*kpx_yaml_doc_err_fn)(void *arg, const char *msg);
int kpx_yaml_to_json_ex(const char *buf, size_t len, struct json_object **docs,
			char *err, size_t errlen,
			kpx_yaml_doc_err_fn on_doc_err, void *arg);
/*
 * The same, each document handed to fn as soon as it is built (borrowed:
 * freed when fn returns), so that a big multi-document file never holds
 * every tree at once. Documents before a later syntax error have been
 * handed over already: apply them only when this returns 0.
 */
typedef void (*kpx_yaml_doc_fn)(void *arg, struct json_object *doc);
int kpx_yaml_each_doc(const char *buf, size_t len, kpx_yaml_doc_fn fn,
		      void *fn_arg, char *err, size_t errlen,
		      kpx_yaml_doc_err_fn on_doc_err, void *arg);

#endif
