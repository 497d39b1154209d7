// SPDX-License-Identifier: Apache-2.0
/*
 * The manifests-directory source.
 *
 * The first load, and every reload after something unclear (inotify queue
 * overflow, the directory itself moved, deleted or unmounted, a ConfigMap
 * volume's ..data swap, more changed names than PENDING_MAX), is a full
 * listing of the directory. Any other reload is per file: inotify names the
 * files that changed and only those are re-read. For that the source keeps
 * an index: per file, the keys (kind, namespace, name) of the objects it
 * provided at its last good read; per key, the files that provide it.
 *
 * Rules, the same for a full listing and a per-file reload:
 * - An object defined in several files: the file last in name order (byte
 *   order, strcmp) wins, as when every file is read in name order and each
 *   overwrites the one before; inside one file the last document wins.
 *   When the winning file drops the object, the next file that still has
 *   it is re-read and its version applies; the object is deleted when no
 *   file has it any more.
 * - A deleted or renamed-away file deletes its objects (unless another
 *   file has them).
 * - A file that cannot be read or parsed as a whole (YAML syntax error,
 *   unreadable, too large) keeps the objects of its last good read, with an
 *   error naming the file: an operator's typo must not withdraw the
 *   services of that file. (A full listing with replace semantics, the
 *   first load and kpx_manifests_load, has no earlier read to keep.) A
 *   single object that fails to decode is skipped, so it is deleted when it
 *   was there before, as with a full listing.
 * - A directory that cannot be listed, or is gone while its files are
 *   read, keeps everything: it may come back (a volume being remounted).
 *
 * Objects carry a resourceVersion derived from their content, so that
 * re-reading an unchanged object is not a change, while editing a file
 * that was dumped with its API resourceVersion still is.
 */
#include "k8s/manifests.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <malloc.h>
#include <search.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "k8s/objects.h"
#include "model/store.h"

/* Bigger files are refused (an error naming the file); README. */
#define MAX_FILE_SIZE (64ull << 20)
/* Re-reads at least this big, deleting this many objects, and listings
 * with replace semantics end with a malloc_trim (batch_free). */
#define TRIM_BYTES (1u << 20)
#define TRIM_KEYS 1000
#define COALESCE_MS 100
/* Retry period for re-watching a directory that is gone. */
#define REWATCH_MS 1000
/* More changed names in one burst than this: a full listing is as cheap. */
#define PENDING_MAX 4096
/* Re-reads of files whose object became the winner again; a cascade
 * longer than this (files changing while being re-read) does a full
 * listing instead. */
#define REFRESH_ROUNDS 4
#define WATCH_MASK                                                          \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct load_stats {
	size_t files;	/* files read */
	size_t objects; /* services, slices and own Node provided */
	size_t errors;	/* objects and files skipped */
};

struct ptrvec {
	void **v;
	size_t n, cap;
};

struct mfile;

/* One object key and the files that provide it (usually one). */
struct mkey {
	struct ptrvec prov;	  /* struct mfile * */
	struct mfile *old_winner; /* batch scratch: winner before the batch */
	uint64_t touched;	  /* batch serial in which it lost a provider */
	enum kpx_kind kind;
	uint16_t name_off; /* id + name_off: the name */
	char id[];	   /* "S:ns/name", "E:ns/name", "N:/name" */
};

struct mfile {
	struct ptrvec keys;   /* struct mkey *, each once */
	struct load_stats st; /* this file's share of the totals */
	uint64_t seen;	      /* batch serial in which it was re-read */
	uint64_t refresh;     /* batch serial in which it was queued again */
	bool gone;
	char name[];
};

/* What the directory provided, file by file. */
struct mindex {
	void *files; /* tsearch tree of mfile names */
	void *keys;  /* tsearch tree of mkey ids */
	size_t n_files;
	struct load_stats total;
	uint64_t serial;
	/* An allocation failed: the index may miss a key, so the next reload
	 * is a full listing with replace semantics that rebuilds it. */
	bool broken;
};

/* Name of this node: its Node object in DIR, if any, gives the zone. */
static char own_node_name[KPX_NAME_MAX];

void kpx_manifests_set_node(const char *name)
{
	snprintf(own_node_name, sizeof(own_node_name), "%s", name ? name : "");
}

struct kpx_manifests_source {
	struct kpx_loop *loop;
	struct kpx_store *store;
	char *dir;
	kpx_change_fn on_change;
	void *arg;
	int ifd;
	int wd; /* -1: the directory's watch is gone (moved, deleted) */
	struct kpx_timer *timer;
	struct mindex ix;
	char **pending; /* changed names since the last reload */
	size_t n_pending, cap_pending;
	bool full; /* the next reload is a full listing */
	bool dir_gone_logged;
	uint64_t loads;
	double last_load; /* wall-clock seconds */
	size_t last_read; /* files read by the last re-read */
	bool last_full;	  /* the last re-read was a full listing */
	int last_rc;
};

static bool wanted_name(const char *name)
{
	static const char *const exts[] = { ".yaml", ".yml", ".json" };
	size_t n = strlen(name);

	/* Hidden files include editor swap files and the ..data
	 * indirection of ConfigMap volumes (its targets are read through
	 * the visible symlinks). */
	if (name[0] == '.')
		return false;
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		size_t l = strlen(exts[i]);

		if (n > l && !strcmp(name + n - l, exts[i]))
			return true;
	}
	return false;
}

/* The manifest file names in dir, unsorted. */
static int list_dir(const char *dir, char ***out, size_t *n_out)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	DIR *d;
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((errno = 0, de = readdir(d))) {
		if (!wanted_name(de->d_name))
			continue;
		if (n == cap) {
			char **nn;

			cap = cap ? cap * 2 : 16;
			nn = realloc(names, cap * sizeof(*names));
			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (errno)
		rc = -errno;
out:
	closedir(d);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		return rc;
	}
	*out = names;
	*n_out = n;
	return 0;
}

static const char *file_type(mode_t m)
{
	return S_ISFIFO(m) ? "a FIFO" :
	       S_ISCHR(m)  ? "a character device" :
	       S_ISBLK(m)  ? "a block device" :
	       S_ISSOCK(m) ? "a socket" :
	       S_ISDIR(m)  ? "a directory" :
			     "not a regular file";
}

/*
 * Reads a regular file of at most MAX_FILE_SIZE. Symlinks are followed
 * (ConfigMap volumes are symlinks), but only to regular files: anything
 * else is refused before it is opened, because opening a FIFO blocks the
 * agent's loop until a writer comes and opening a device can act on it.
 * The open itself is O_NONBLOCK and checked again with fstat, so a FIFO
 * renamed over the name between stat and open cannot block either.
 */
static int read_file(const char *path, char **buf, size_t *len, char *err,
		     size_t errlen)
{
	struct stat st;
	size_t off = 0;
	char *b = NULL;
	int fd, rc = 0;

	*buf = NULL;
	*len = 0;
	if (stat(path, &st)) {
		rc = -errno;
		snprintf(err, errlen, "open: %s", strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s, not a regular file; not opened",
			 file_type(st.st_mode));
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "open: %s", strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		snprintf(err, errlen, "stat: %s", strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(err, errlen, "%s, not a regular file",
			 file_type(st.st_mode));
		goto out;
	}
	if ((uint64_t)st.st_size > MAX_FILE_SIZE) {
		rc = -EFBIG;
		snprintf(err, errlen, "file too large (%lld bytes > %llu)",
			 (long long)st.st_size, MAX_FILE_SIZE);
		goto out;
	}
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* The size may change under us (a writer); read what is there. */
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, b + off, (size_t)st.st_size - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "read: %s", strerror(-rc));
			goto out;
		}
		if (r == 0)
			break;
		off += (size_t)r;
	}
	b[off] = '\0';
	*buf = b;
	*len = off;
	b = NULL;
out:
	free(b);
	close(fd);
	return rc;
}

/* FNV-1a of the object's canonical JSON, as its resourceVersion. */
static void content_rv(struct json_object *obj, char *rv, size_t len)
{
	const char *s = json_object_to_json_string_ext(obj,
						       JSON_C_TO_STRING_PLAIN);
	uint64_t h = 0xcbf29ce484222325ull;

	for (; s && *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	snprintf(rv, len, "m%016llx", (unsigned long long)h);
}

static const char *kind_str(struct json_object *obj)
{
	struct json_object *k;

	if (json_object_object_get_ex(obj, "kind", &k) &&
	    json_object_is_type(k, json_type_string))
		return json_object_get_string(k);
	return "?";
}


static int vec_push(struct ptrvec *vec, void *p)
{
	if (vec->n == vec->cap) {
		/* From 1: most keys have a single provider. */
		size_t cap = vec->cap ? vec->cap * 2 : 1;
		void **v = realloc(vec->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		vec->v = v;
		vec->cap = cap;
	}
	vec->v[vec->n++] = p;
	return 0;
}

static int vec_reserve(struct ptrvec *vec, size_t more)
{
	size_t cap = vec->cap ? vec->cap : 4;
	void **v;

	if (vec->n + more <= vec->cap)
		return 0;
	while (cap < vec->n + more)
		cap *= 2;
	v = realloc(vec->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	vec->v = v;
	vec->cap = cap;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The trees hold the name/id strings; these map them back. */
static struct mfile *file_of(const void *name)
{
	return (struct mfile *)((const char *)name -
				offsetof(struct mfile, name));
}

static struct mkey *key_of(const void *id)
{
	return (struct mkey *)((const char *)id - offsetof(struct mkey, id));
}

static struct mfile *file_find(struct mindex *ix, const char *name)
{
	void **p = tfind(name, &ix->files, cmp_str);

	return p ? file_of(*p) : NULL;
}

static struct mfile *file_get(struct mindex *ix, const char *name)
{
	struct mfile *f = file_find(ix, name);

	if (f)
		return f;
	f = calloc(1, sizeof(*f) + strlen(name) + 1);
	if (!f)
		return NULL;
	strcpy(f->name, name);
	if (!tsearch(f->name, &ix->files, cmp_str)) {
		free(f);
		return NULL;
	}
	ix->n_files++;
	return f;
}

static void file_free(void *name)
{
	struct mfile *f = file_of(name);

	free(f->keys.v);
	free(f);
}

static void key_free(void *id)
{
	struct mkey *k = key_of(id);

	free(k->prov.v);
	free(k);
}

static struct mkey *key_get(struct mindex *ix, enum kpx_kind kind,
			    const char *ns, const char *name)
{
	char id[3 + KPX_NS_MAX + KPX_NAME_MAX];
	struct mkey *k;
	void **p;
	int n;

	n = snprintf(id, sizeof(id), "%c:%s/%s",
		     kind == KPX_KIND_SERVICE ? 'S' :
		     kind == KPX_KIND_SLICE   ? 'E' :
						'N',
		     ns, name);
	if (n < 0 || (size_t)n >= sizeof(id))
		return NULL;
	p = tfind(id, &ix->keys, cmp_str);
	if (p)
		return key_of(*p);
	k = calloc(1, sizeof(*k) + (size_t)n + 1);
	if (!k)
		return NULL;
	memcpy(k->id, id, (size_t)n + 1);
	k->kind = kind;
	k->name_off = (uint16_t)(n - strlen(name));
	if (!tsearch(k->id, &ix->keys, cmp_str)) {
		free(k);
		return NULL;
	}
	return k;
}

static void index_free(struct mindex *ix)
{
	tdestroy(ix->keys, key_free);
	tdestroy(ix->files, file_free);
	memset(ix, 0, sizeof(*ix));
}

/* The provider whose version of k is in the store: the last in name order. */
static struct mfile *winner(const struct mkey *k)
{
	struct mfile *w = NULL;

	for (size_t i = 0; i < k->prov.n; i++) {
		struct mfile *f = k->prov.v[i];

		if (!w || strcmp(f->name, w->name) > 0)
			w = f;
	}
	return w;
}

static void stats_sub(struct load_stats *t, const struct load_stats *s)
{
	t->files -= s->files;
	t->objects -= s->objects;
	t->errors -= s->errors;
}

static void stats_add(struct load_stats *t, const struct load_stats *s)
{
	t->files += s->files;
	t->objects += s->objects;
	t->errors += s->errors;
}

/* One reload: a set of files re-read, in descending name order. */
struct batch {
	struct mindex *ix;
	struct kpx_store *store;
	const char *dir;
	bool replace;	       /* a full listing with replace semantics */
	bool dir_gone;	       /* the directory vanished while reading */
	struct ptrvec touched; /* struct mkey * that lost a provider */
	struct ptrvec gone;    /* struct mfile * deleted, freed at the end */
	struct ptrvec refresh; /* struct mfile * to re-read next round */
	size_t reread;
	size_t bytes_read;     /* of the files re-read */
	size_t keys_deleted;   /* objects no file has any more */
};

static void set_broken(struct batch *b, const char *what)
{
	if (!b->ix->broken)
		kpx_err("manifests: %s: out of memory (%s); the next re-read lists the whole directory",
			b->dir, what);
	b->ix->broken = true;
}

/* f no longer provides any key; remembers which keys lost a provider. */
static int file_unlink_keys(struct batch *b, struct mfile *f)
{
	if (vec_reserve(&b->touched, f->keys.n))
		return -ENOMEM;
	for (size_t i = 0; i < f->keys.n; i++) {
		struct mkey *k = f->keys.v[i];

		if (k->touched != b->ix->serial) {
			k->touched = b->ix->serial;
			k->old_winner = winner(k);
			b->touched.v[b->touched.n++] = k;
		}
		for (size_t j = 0; j < k->prov.n; j++) {
			if (k->prov.v[j] == f) {
				k->prov.v[j] = k->prov.v[--k->prov.n];
				break;
			}
		}
	}
	f->keys.n = 0;
	return 0;
}

static int file_link_key(struct mfile *f, struct mkey *k)
{
	for (size_t i = 0; i < k->prov.n; i++)
		if (k->prov.v[i] == f)
			return 0; /* twice in one file */
	if (vec_push(&k->prov, f))
		return -ENOMEM;
	if (vec_push(&f->keys, k)) {
		k->prov.n--;
		return -ENOMEM;
	}
	return 0;
}

/*
 * Decodes one document into *out when it is an object this source provides
 * (a Service, an EndpointSlice, this node's Node) and returns its kind;
 * else returns -1 (logged, counted when it is an error).
 */
static int decode_object(const char *file, size_t idx, struct json_object *obj,
			 void **out, struct load_stats *st)
{
	char err[256], ref[KPX_NS_MAX + KPX_NAME_MAX + 2];
	const char *kind;
	int k, rc;

	*out = NULL;
	if (!json_object_is_type(obj, json_type_object)) {
		kpx_err("manifests: %s: document %zu: expected an object, got %s; skipped",
			file, idx + 1,
			json_type_to_name(json_object_get_type(obj)));
		st->errors++;
		return -1;
	}
	kind = kind_str(obj);
	kpx_object_ref(obj, ref, sizeof(ref));
	k = kpx_object_kind(obj);
	if (k < 0) {
		/* An EndpointSlice of another API version would silently
		 * lose endpoints; everything else is simply not ours. */
		if (!strcmp(kind, "Service") || !strcmp(kind, "EndpointSlice")) {
			struct json_object *api = NULL;

			json_object_object_get_ex(obj, "apiVersion", &api);
			kpx_err("manifests: %s: %s (%s): unsupported apiVersion \"%s\"; skipped",
				file, ref, kind,
				api ? json_object_get_string(api) : "");
			st->errors++;
		} else {
			kpx_dbg(2, "manifests: %s: %s (%s): not a Service or EndpointSlice; ignored",
				file, ref, kind);
		}
		return -1;
	}
	if (k == KPX_KIND_NODE) {
		struct kpx_node *node;

		/* Only this node's own Node matters (its zone, for topology
		 * hints); other nodes in a cluster dump are ignored. */
		rc = kpx_node_decode(obj, &node, err, sizeof(err));
		if (!rc && (!own_node_name[0] ||
			    strcmp(node->name, own_node_name))) {
			kpx_node_free(node);
			kpx_dbg(2, "manifests: %s: %s (Node): not this node; ignored",
				file, ref);
			return -1;
		}
		if (!rc) {
			*out = node;
			st->objects++;
			return k;
		}
		kpx_err("manifests: %s: %s (Node): %s; skipped", file, ref, err);
		st->errors++;
		return -1;
	}
	if (k == KPX_KIND_SERVICE) {
		struct kpx_service *svc;

		rc = kpx_service_decode(obj, &svc, err, sizeof(err));
		if (!rc) {
			content_rv(obj, svc->resource_version,
				   sizeof(svc->resource_version));
			*out = svc;
		}
	} else {
		struct kpx_endpoint_slice *sl;

		rc = kpx_slice_decode(obj, &sl, err, sizeof(err));
		if (!rc) {
			content_rv(obj, sl->resource_version,
				   sizeof(sl->resource_version));
			*out = sl;
		}
	}
	if (!rc) {
		st->objects++;
		return k;
	}
	if (rc == -EOPNOTSUPP) {
		/* FQDN slices are valid objects kube-proxy ignores too. */
		kpx_dbg(2, "manifests: %s: %s (%s): %s; ignored", file, ref,
			kind, err);
		return -1;
	}
	kpx_err("manifests: %s: %s (%s): %s; skipped", file, ref, kind, err);
	st->errors++;
	return -1;
}

static bool dir_exists(const char *dir)
{
	struct stat st;

	return !stat(dir, &st) && S_ISDIR(st.st_mode);
}

static void obj_key(enum kpx_kind kind, void *obj, const char **ns,
		    const char **name)
{
	*ns = "";
	if (kind == KPX_KIND_SERVICE) {
		*ns = ((struct kpx_service *)obj)->ns;
		*name = ((struct kpx_service *)obj)->name;
	} else if (kind == KPX_KIND_SLICE) {
		*ns = ((struct kpx_endpoint_slice *)obj)->ns;
		*name = ((struct kpx_endpoint_slice *)obj)->name;
	} else {
		*name = ((struct kpx_node *)obj)->name;
	}
}

/* A file that cannot be read or parsed: keeps what it provided. */
static void file_failed(struct batch *b, const char *name, struct mfile *f,
			struct load_stats *st, const char *err)
{
	if (f && f->keys.n && !b->replace) {
		kpx_err("manifests: %s: %s; keeping its %zu objects from the last good read",
			name, err, f->st.objects);
		st->objects = f->st.objects;
	} else {
		kpx_err("manifests: %s: %s; skipped", name, err);
	}
	st->errors++;
	if (!f)
		f = file_get(b->ix, name);
	if (!f) {
		set_broken(b, name);
		return;
	}
	f->seen = b->ix->serial;
	/* A replace listing sweeps its objects from the store. */
	if (b->replace && file_unlink_keys(b, f))
		set_broken(b, name);
	stats_sub(&b->ix->total, &f->st);
	f->st = *st;
	stats_add(&b->ix->total, &f->st);
}

/* One file's documents, decoded as the reader hands them over: the typed
 * objects are a fraction of the JSON trees' size, which are freed at once. */
struct decoded {
	const char *file;
	struct load_stats *st;
	size_t idx;
	struct decoded_obj {
		int kind;
		void *obj;
	} *v;
	size_t n, cap;
	bool oom; /* an object was lost: the index must be rebuilt */
};

static void doc_decode(void *arg, struct json_object *doc)
{
	struct decoded *d = arg;
	void *obj;
	int kind = decode_object(d->file, d->idx++, doc, &obj, d->st);

	if (kind < 0)
		return;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct decoded_obj *v = realloc(d->v, cap * sizeof(*v));

		if (!v) {
			kpx_object_free(kind, obj);
			d->oom = true;
			return;
		}
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].kind = kind;
	d->v[d->n++].obj = obj;
}

static void decoded_free(struct decoded *d)
{
	for (size_t i = 0; i < d->n; i++)
		kpx_object_free(d->v[i].kind, d->v[i].obj);
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

/* A document the YAML reader refused (an alias bomb): only it is skipped. */
static void doc_error(void *arg, const char *msg)
{
	struct decoded *d = arg;

	kpx_err("manifests: %s: %s", d->file, msg);
	d->st->errors++;
	d->idx++;
}

/*
 * Re-reads one file: links the keys it provides now, upserts the objects
 * it wins. Files are processed in descending name order, so every file
 * that could win over this one already has its final keys.
 */
static void batch_file(struct batch *b, const char *name)
{
	struct mfile *f = file_find(b->ix, name);
	struct load_stats st = { 0 };
	struct decoded dec = { .file = name, .st = &st };
	char path[4096], err[256];
	char *buf = NULL;
	size_t len;
	int rc;

	if (f && f->seen == b->ix->serial)
		return; /* twice in one batch */
	b->reread++;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", b->dir, name) >=
	    sizeof(path)) {
		file_failed(b, name, f, &st, "path too long");
		return;
	}
	rc = read_file(path, &buf, &len, err, sizeof(err));
	if (rc == -ENOENT && !dir_exists(b->dir)) {
		/* Not a deleted file: the whole directory is gone (for the
		 * moment, maybe). Keep everything. */
		b->dir_gone = true;
		return;
	}
	if (rc == -ENOENT) {
		if (!f)
			return;
		if (file_unlink_keys(b, f) || vec_push(&b->gone, f)) {
			set_broken(b, name);
			return;
		}
		f->seen = b->ix->serial;
		f->gone = true;
		stats_sub(&b->ix->total, &f->st);
		memset(&f->st, 0, sizeof(f->st));
		return;
	}
	if (!rc) {
		st.files = 1;
		b->bytes_read += len;
		rc = kpx_yaml_each_doc(buf, len, doc_decode, &dec, err,
				       sizeof(err), doc_error, &dec);
		free(buf);
	}
	if (rc) {
		/* Nothing of a file that does not parse applies; the file
		 * as a whole counts as one error. */
		decoded_free(&dec);
		st.objects = 0;
		st.errors = 0;
		file_failed(b, name, f, &st, err);
		return;
	}
	if (dec.oom)
		set_broken(b, name);
	if (!f)
		f = file_get(b->ix, name);
	if (!f || file_unlink_keys(b, f)) {
		set_broken(b, name);
		decoded_free(&dec);
		return;
	}
	f->seen = b->ix->serial;
	for (size_t i = 0; i < dec.n; i++) {
		const char *ns, *oname;
		struct mkey *k;
		void *obj = dec.v[i].obj;
		int kind = dec.v[i].kind;

		/* Owned by the store or freed below, whatever happens. */
		dec.v[i].obj = NULL;
		obj_key(kind, obj, &ns, &oname);
		k = key_get(b->ix, kind, ns, oname);
		if (!k || file_link_key(f, k)) {
			set_broken(b, name);
			/* Replace semantics keep the store right. */
			kpx_store_upsert(b->store, kind, obj);
			continue;
		}
		if (winner(k) == f)
			kpx_store_upsert(b->store, kind, obj);
		else
			kpx_object_free(kind, obj);
	}
	free(dec.v);
	stats_sub(&b->ix->total, &f->st);
	f->st = st;
	stats_add(&b->ix->total, &f->st);
}

static void store_delete_key(struct kpx_store *store, const struct mkey *k)
{
	char ns[KPX_NS_MAX];
	size_t n = (size_t)(k->name_off - 3); /* "X:" ... "/" */

	if (n >= sizeof(ns))
		n = sizeof(ns) - 1;
	memcpy(ns, k->id + 2, n);
	ns[n] = '\0';
	kpx_store_delete(store, k->kind, k->kind == KPX_KIND_NODE ? NULL : ns,
			 k->id + k->name_off);
}

/*
 * Keys that lost a provider: deleted when no file has them any more;
 * when the winner changed to a file not re-read in this batch, that file
 * is queued for re-reading (its version must replace the old winner's).
 */
static void batch_finish(struct batch *b)
{
	for (size_t i = 0; i < b->touched.n; i++) {
		struct mkey *k = b->touched.v[i];
		struct mfile *w;

		if (!k->prov.n) {
			b->keys_deleted++;
			store_delete_key(b->store, k);
			tdelete(k->id, &b->ix->keys, cmp_str);
			key_free(k->id);
			continue;
		}
		w = winner(k);
		if (w == k->old_winner || w->seen == b->ix->serial ||
		    w->refresh == b->ix->serial)
			continue;
		w->refresh = b->ix->serial;
		if (vec_push(&b->refresh, w))
			set_broken(b, w->name);
	}
	for (size_t i = 0; i < b->gone.n; i++) {
		struct mfile *f = b->gone.v[i];

		tdelete(f->name, &b->ix->files, cmp_str);
		file_free(f->name);
		b->ix->n_files--;
	}
	b->touched.n = 0;
	b->gone.n = 0;
}

static int cmp_names_desc(const void *a, const void *b)
{
	return -strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts names descending, as run_batch wants them, and drops repeats
 * (freed when owned). Returns the new count. */
static size_t sort_unique_desc(char **names, size_t n, bool owned)
{
	size_t k = 0;

	if (n)
		qsort(names, n, sizeof(*names), cmp_names_desc);
	for (size_t i = 0; i < n; i++)
		if (!k || strcmp(names[k - 1], names[i]))
			names[k++] = names[i];
		else if (owned)
			free(names[i]);
	return k;
}

/*
 * Re-reads names (sorted descending, no duplicates), then the files that
 * became winners again. Returns 0, -ENOENT when the directory vanished
 * meanwhile (nothing more is changed then), -EAGAIN when the re-reads did
 * not settle, -ENOMEM.
 */
static int run_batch(struct batch *b, char **names, size_t n)
{
	char **own = NULL;

	for (int round = 0;; round++) {
		b->ix->serial++;
		for (size_t i = 0; i < n && !b->dir_gone; i++)
			batch_file(b, names[i]);
		batch_finish(b);
		free(own);
		own = NULL;
		if (b->dir_gone)
			return -ENOENT;
		if (!b->refresh.n)
			return 0;
		n = b->refresh.n;
		b->refresh.n = 0;
		if (round >= REFRESH_ROUNDS)
			return -EAGAIN;
		/* Not gone files: their names stay valid for the round. */
		own = malloc(n * sizeof(*own));
		if (!own) {
			set_broken(b, "re-read");
			return -ENOMEM;
		}
		for (size_t i = 0; i < n; i++)
			own[i] = ((struct mfile *)b->refresh.v[i])->name;
		qsort(own, n, sizeof(*own), cmp_names_desc);
		names = own;
	}
}

/*
 * After reading big files or deleting many objects, hands the freed heap
 * back to the kernel. glibc returns only the top of the heap by itself;
 * the trees of a 60 MB file, freed between long-lived objects, otherwise
 * stay resident (RSS stayed at hundreds of MB after such a file was
 * deleted). malloc_trim walks the heap: only after big changes.
 */
static void batch_free(struct batch *b)
{
	free(b->touched.v);
	free(b->gone.v);
	free(b->refresh.v);
	if (b->replace || b->bytes_read >= TRIM_BYTES ||
	    b->keys_deleted >= TRIM_KEYS)
		malloc_trim(0);
}

static void twalk_name(const void *node, VISIT which, void *arg)
{
	struct ptrvec *names = arg;

	if (which != postorder && which != leaf)
		return;
	/* Full: the caller notices the short count. */
	if (names->n < names->cap)
		names->v[names->n++] = *(char *const *)node;
}


/*
 * A full listing: every manifest file in dir, and every file the index
 * knows (gone ones are deleted). replace: replace semantics on the store
 * (first load, one-shot load, an index that missed something): whatever
 * no file provided is swept.
 */
static int full_listing(struct mindex *ix, const char *dir,
			struct kpx_store *store, bool replace, size_t *reread)
{
	struct batch b = { .ix = ix, .store = store, .dir = dir,
			   .replace = replace };
	struct ptrvec known = { 0 };
	char **names = NULL, **all = NULL;
	size_t n = 0, n_all = 0;
	int rc;

	*reread = 0;
	rc = list_dir(dir, &names, &n);
	if (rc) {
		/* Keep what was loaded before: a directory that vanished
		 * for a moment must not withdraw every service. */
		kpx_err("manifests: %s: cannot read directory: %s", dir,
			strerror(-rc));
		return rc;
	}
	if (vec_reserve(&known, ix->n_files + 1)) {
		rc = -ENOMEM;
		goto out;
	}
	twalk_r(ix->files, twalk_name, &known);
	all = malloc((n + known.n + 1) * sizeof(*all));
	if (!all) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(all, names, n * sizeof(*all));
	memcpy(all + n, known.v, known.n * sizeof(*all));
	n_all = sort_unique_desc(all, n + known.n, false);
	if (replace) {
		ix->broken = false;
		for (int k = 0; k < KPX_KIND_COUNT; k++)
			kpx_store_replace_begin(store, k);
	}
	rc = run_batch(&b, all, n_all);
	*reread = b.reread;
	if (rc == -ENOENT) {
		kpx_err("manifests: %s: directory gone while reading it; keeping the loaded objects",
			dir);
		/* No sweep: what was not read yet must stay. The next
		 * listing replaces again and completes the index. */
		if (replace)
			ix->broken = true;
		goto out;
	}
	if (replace)
		for (int k = 0; k < KPX_KIND_COUNT; k++)
			kpx_store_replace_end(store, k);
out:
	if (rc == -ENOMEM)
		kpx_err("manifests: %s: out of memory listing the directory",
			dir);
	batch_free(&b);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(all);
	free(known.v);
	return rc;
}

int kpx_manifests_load(const char *dir, struct kpx_store *store,
		       size_t *n_errors)
{
	struct mindex ix = { 0 };
	size_t reread;
	int rc;

	rc = full_listing(&ix, dir, store, true, &reread);
	if (n_errors)
		*n_errors = rc ? 0 : ix.total.errors;
	kpx_dbg(1, "manifests: %s: %zu files, %zu objects, %zu errors", dir,
		ix.total.files, ix.total.objects, ix.total.errors);
	index_free(&ix);
	return rc;
}

static void pending_clear(struct kpx_manifests_source *src)
{
	for (size_t i = 0; i < src->n_pending; i++)
		free(src->pending[i]);
	src->n_pending = 0;
}

/* Re-reads the files named by inotify since the last reload. */
static int partial_reload(struct kpx_manifests_source *src, size_t *reread)
{
	struct batch b = { .ix = &src->ix, .store = src->store,
			   .dir = src->dir };
	char **names = src->pending;
	size_t n = 0;
	int rc;

	*reread = 0;
	if (!src->n_pending)
		return 0;
	if (!dir_exists(src->dir))
		return -ENOENT;
	n = src->n_pending = sort_unique_desc(names, src->n_pending, true);
	rc = run_batch(&b, names, n);
	*reread = b.reread;
	batch_free(&b);
	return rc;
}

static int watch_dir(struct kpx_manifests_source *src)
{
	int wd = inotify_add_watch(src->ifd, src->dir, WATCH_MASK);

	if (wd < 0) {
		int rc = -errno;

		if (!src->dir_gone_logged)
			kpx_err("manifests: %s: cannot watch: %s; keeping the loaded objects, retrying every %d ms",
				src->dir, strerror(-rc), REWATCH_MS);
		src->dir_gone_logged = true;
		return rc;
	}
	if (src->dir_gone_logged)
		kpx_info("manifests: %s: watched again", src->dir);
	src->dir_gone_logged = false;
	src->wd = wd;
	return 0;
}

static void src_reload(struct kpx_manifests_source *src)
{
	bool full = src->full || src->ix.broken || src->wd < 0;
	size_t reread = 0;
	int rc;

	if (src->wd < 0 && watch_dir(src)) {
		pending_clear(src);
		kpx_timer_arm(src->timer, REWATCH_MS);
		return;
	}
	src->full = false;
	if (full)
		rc = full_listing(&src->ix, src->dir, src->store,
				  src->ix.broken, &reread);
	else
		rc = partial_reload(src, &reread);
	pending_clear(src);
	if (rc && rc != -ENOENT)
		kpx_warn("manifests: %s: re-read incomplete (%s); listing the whole directory",
			 src->dir, strerror(-rc));
	if (rc) {
		/* Unclear state: the next re-read is a full listing; a
		 * vanished directory waits for its next event. */
		src->full = true;
		if (rc != -ENOENT && !kpx_timer_armed(src->timer))
			kpx_timer_arm(src->timer, COALESCE_MS);
	}
	src->loads++;
	src->last_load = kpx_wall_seconds();
	src->last_rc = rc;
	src->last_read = reread;
	src->last_full = full;
	kpx_dbg(1, "manifests: %s: %zu files, %zu objects, %zu errors (%s, %zu read)",
		src->dir, src->ix.total.files, src->ix.total.objects,
		src->ix.total.errors, full ? "full listing" : "changed files",
		reread);
	if (kpx_store_dirty(src->store) && src->on_change)
		src->on_change(src->arg);
}

static void on_timer(void *arg)
{
	src_reload(arg);
}

/* Records a changed name; false when the name is nothing to re-read. */
static bool pending_add(struct kpx_manifests_source *src, const char *name)
{
	char *dup;

	if (src->full)
		return true;
	if (src->n_pending == src->cap_pending) {
		size_t cap = src->cap_pending ? src->cap_pending * 2 : 16;
		char **p;

		if (cap > PENDING_MAX) {
			pending_clear(src);
			src->full = true;
			return true;
		}
		p = realloc(src->pending, cap * sizeof(*p));
		if (!p) {
			pending_clear(src);
			src->full = true;
			return true;
		}
		src->pending = p;
		src->cap_pending = cap;
	}
	dup = strdup(name);
	if (!dup) {
		pending_clear(src);
		src->full = true;
		return true;
	}
	src->pending[src->n_pending++] = dup;
	return true;
}

/* True when ev calls for a re-read. */
static bool note_event(struct kpx_manifests_source *src,
		       const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		kpx_warn("manifests: %s: inotify queue overflow; listing the whole directory",
			 src->dir);
		src->full = true;
		return true;
	}
	/* The IN_IGNORED of a watch we replaced, or events of a directory
	 * that was moved away. */
	if (src->wd < 0 || ev->wd != src->wd)
		return false;
	if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT |
			IN_IGNORED)) {
		kpx_info("manifests: %s: the directory itself was moved or deleted; watching the path again",
			 src->dir);
		/* A moved directory keeps its watch: drop it, the path is
		 * what we serve. */
		inotify_rm_watch(src->ifd, src->wd);
		src->wd = -1;
		src->full = true;
		return true;
	}
	if (!ev->len || !ev->name[0])
		return false;
	if (wanted_name(ev->name))
		return pending_add(src, ev->name);
	/* A ConfigMap volume swaps its "..data" symlink: every visible
	 * name (a symlink through it) changed without an event of its own. */
	if (!strncmp(ev->name, "..", 2)) {
		src->full = true;
		return true;
	}
	/* Editor temp and swap files: renaming one to a manifest name is an
	 * event of that name. */
	return false;
}

static void on_inotify(int fd, uint32_t events, void *arg)
{
	struct kpx_manifests_source *src = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	ssize_t r;

	(void)events;
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + r;) {
			const struct inotify_event *ev = (const void *)p;

			p += sizeof(*ev) + ev->len;
			if (note_event(src, ev))
				any = true;
		}
	}
	if (r < 0 && errno != EAGAIN && errno != EINTR) {
		kpx_warn("manifests: %s: inotify read: %s", src->dir,
			 strerror(errno));
		src->full = true;
		any = true;
	}
	/* Arm once per burst: the re-read happens at most 100 ms after the
	 * first event, however long the burst. */
	if (any && !kpx_timer_armed(src->timer))
		kpx_timer_arm(src->timer, COALESCE_MS);
}

int kpx_manifests_open(struct kpx_loop *loop, const char *dir,
		       struct kpx_store *store, kpx_change_fn on_change,
		       void *arg, struct kpx_manifests_source **out)
{
	struct kpx_manifests_source *src;
	size_t reread;
	int rc;

	*out = NULL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->ifd = -1;
	src->wd = -1;
	src->loop = loop;
	src->store = store;
	src->on_change = on_change;
	src->arg = arg;
	src->dir = strdup(dir);
	if (!src->dir) {
		rc = -ENOMEM;
		goto err;
	}
	/* Watch before the first read so no change between them is lost. */
	src->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (src->ifd < 0) {
		rc = -errno;
		kpx_err("manifests: inotify_init1: %s", strerror(-rc));
		goto err;
	}
	src->wd = inotify_add_watch(src->ifd, dir, WATCH_MASK);
	if (src->wd < 0) {
		rc = -errno;
		kpx_err("manifests: %s: cannot watch: %s", dir, strerror(-rc));
		goto err;
	}
	rc = kpx_timer_new(loop, on_timer, src, &src->timer);
	if (rc) {
		kpx_err("manifests: timer: %s", strerror(-rc));
		goto err;
	}
	rc = full_listing(&src->ix, dir, store, true, &reread);
	src->loads = 1;
	src->last_load = kpx_wall_seconds();
	src->last_rc = rc;
	src->last_read = reread;
	src->last_full = true;
	if (rc)
		goto err;
	rc = kpx_loop_watch_fd(loop, src->ifd, EPOLLIN, on_inotify, src);
	if (rc) {
		kpx_err("manifests: watch inotify fd: %s", strerror(-rc));
		goto err;
	}
	kpx_info("manifests: %s: %zu files, %zu objects, %zu errors", dir,
		 src->ix.total.files, src->ix.total.objects,
		 src->ix.total.errors);
	*out = src;
	return 0;
err:
	kpx_manifests_close(src);
	return rc;
}

void kpx_manifests_close(struct kpx_manifests_source *src)
{
	if (!src)
		return;
	if (src->ifd >= 0) {
		kpx_loop_unwatch_fd(src->loop, src->ifd);
		close(src->ifd);
	}
	kpx_timer_free(src->timer);
	pending_clear(src);
	free(src->pending);
	index_free(&src->ix);
	free(src->dir);
	free(src);
}

struct json_object *kpx_manifests_status(const struct kpx_manifests_source *src)
{
	struct json_object *o;

	if (!src)
		return NULL;
	o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "kind", json_object_new_string("manifests"));
	json_object_object_add(o, "dir", json_object_new_string(src->dir));
	json_object_object_add(o, "files",
			       json_object_new_int64((int64_t)src->ix.total.files));
	json_object_object_add(o, "objects",
			       json_object_new_int64((int64_t)src->ix.total.objects));
	json_object_object_add(o, "errors",
			       json_object_new_int64((int64_t)src->ix.total.errors));
	json_object_object_add(o, "loads",
			       json_object_new_int64((int64_t)src->loads));
	json_object_object_add(o, "last_load",
			       json_object_new_double(src->last_load));
	json_object_object_add(o, "last_files_read",
			       json_object_new_int64((int64_t)src->last_read));
	json_object_object_add(o, "last_full_listing",
			       json_object_new_boolean(src->last_full));
	if (src->last_rc)
		json_object_object_add(o, "last_error",
				       json_object_new_string(strerror(-src->last_rc)));
	return o;
}
