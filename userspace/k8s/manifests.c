// SPDX-License-Identifier: Apache-2.0
/*
 * The manifests-directory source. Every load is a full listing: services
 * and slices not seen in this read are deleted from the store, so removing
 * a file (or an object from a file) removes its objects. Objects carry a
 * resourceVersion derived from their content, so that re-reading an
 * unchanged file is not a change, while editing a file that was dumped
 * with its API resourceVersion still is.
 */
#include "k8s/manifests.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
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

#define MAX_FILE_SIZE (64ull << 20)
#define COALESCE_MS 100

struct load_stats {
	size_t files;
	size_t objects; /* services and slices loaded */
	size_t errors;	/* objects and files skipped */
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
	struct kpx_timer *timer;
	struct load_stats last;
	uint64_t loads;
	double last_load; /* wall-clock seconds */
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

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of manifest file names in dir. */
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
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	*out = names;
	*n_out = n;
	return 0;
}

/* Reads a regular file (following symlinks) of at most MAX_FILE_SIZE. */
static int read_file(const char *path, char **buf, size_t *len, char *err,
		     size_t errlen)
{
	struct stat st;
	size_t off = 0;
	char *b = NULL;
	int fd, rc = 0;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
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
		rc = -EISDIR;
		snprintf(err, errlen, "not a regular file");
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

static void load_object(const char *file, size_t idx, struct json_object *obj,
			struct kpx_store *store, struct load_stats *st)
{
	char err[256], ref[KPX_NS_MAX + KPX_NAME_MAX + 2];
	const char *kind;
	int k, rc;

	if (!json_object_is_type(obj, json_type_object)) {
		kpx_err("manifests: %s: document %zu: expected an object, got %s; skipped",
			file, idx + 1,
			json_type_to_name(json_object_get_type(obj)));
		st->errors++;
		return;
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
		return;
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
			return;
		}
		if (!rc) {
			kpx_store_upsert(store, KPX_KIND_NODE, node);
			st->objects++;
			return;
		}
		kpx_err("manifests: %s: %s (Node): %s; skipped", file, ref, err);
		st->errors++;
		return;
	}
	if (k == KPX_KIND_SERVICE) {
		struct kpx_service *svc;

		rc = kpx_service_decode(obj, &svc, err, sizeof(err));
		if (!rc) {
			content_rv(obj, svc->resource_version,
				   sizeof(svc->resource_version));
			kpx_store_upsert(store, KPX_KIND_SERVICE, svc);
		}
	} else {
		struct kpx_endpoint_slice *sl;

		rc = kpx_slice_decode(obj, &sl, err, sizeof(err));
		if (!rc) {
			content_rv(obj, sl->resource_version,
				   sizeof(sl->resource_version));
			kpx_store_upsert(store, KPX_KIND_SLICE, sl);
		}
	}
	if (!rc) {
		st->objects++;
		return;
	}
	if (rc == -EOPNOTSUPP) {
		/* FQDN slices are valid objects kube-proxy ignores too. */
		kpx_dbg(2, "manifests: %s: %s (%s): %s; ignored", file, ref,
			kind, err);
		return;
	}
	kpx_err("manifests: %s: %s (%s): %s; skipped", file, ref, kind, err);
	st->errors++;
}

static void load_file(const char *dir, const char *name,
		      struct kpx_store *store, struct load_stats *st)
{
	struct json_object *docs = NULL;
	char path[4096], err[256];
	char *buf;
	size_t len;
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path)) {
		kpx_err("manifests: %s/%s: path too long; skipped", dir, name);
		st->errors++;
		return;
	}
	rc = read_file(path, &buf, &len, err, sizeof(err));
	if (rc == -ENOENT)
		return; /* deleted between readdir and open */
	if (rc) {
		kpx_err("manifests: %s: %s; skipped", name, err);
		st->errors++;
		return;
	}
	st->files++;
	rc = kpx_yaml_to_json(buf, len, &docs, err, sizeof(err));
	free(buf);
	if (rc) {
		kpx_err("manifests: %s: %s; skipped", name, err);
		st->errors++;
		return;
	}
	for (size_t i = 0; i < json_object_array_length(docs); i++)
		load_object(name, i, json_object_array_get_idx(docs, i), store,
			    st);
	json_object_put(docs);
}

static int load_dir(const char *dir, struct kpx_store *store,
		    struct load_stats *st)
{
	char **names;
	size_t n;
	int rc;

	memset(st, 0, sizeof(*st));
	rc = list_dir(dir, &names, &n);
	if (rc) {
		/* Keep what was loaded before: a directory that vanished
		 * for a moment must not withdraw every service. */
		kpx_err("manifests: %s: cannot read directory: %s", dir,
			strerror(-rc));
		return rc;
	}
	kpx_store_replace_begin(store, KPX_KIND_SERVICE);
	kpx_store_replace_begin(store, KPX_KIND_SLICE);
	kpx_store_replace_begin(store, KPX_KIND_NODE);
	for (size_t i = 0; i < n; i++) {
		load_file(dir, names[i], store, st);
		free(names[i]);
	}
	free(names);
	kpx_store_replace_end(store, KPX_KIND_SERVICE);
	kpx_store_replace_end(store, KPX_KIND_SLICE);
	kpx_store_replace_end(store, KPX_KIND_NODE);
	kpx_dbg(1, "manifests: %s: %zu files, %zu objects, %zu errors", dir,
		st->files, st->objects, st->errors);
	return 0;
}

int kpx_manifests_load(const char *dir, struct kpx_store *store,
		       size_t *n_errors)
{
	struct load_stats st;
	int rc;

	rc = load_dir(dir, store, &st);
	if (n_errors)
		*n_errors = rc ? 0 : st.errors;
	return rc;
}

static void src_reload(struct kpx_manifests_source *src)
{
	struct load_stats st;

	src->last_rc = load_dir(src->dir, src->store, &st);
	src->loads++;
	src->last_load = kpx_wall_seconds();
	if (!src->last_rc)
		src->last = st;
	if (kpx_store_dirty(src->store) && src->on_change)
		src->on_change(src->arg);
}

static void on_timer(void *arg)
{
	src_reload(arg);
}

static void on_inotify(int fd, uint32_t events, void *arg)
{
	struct kpx_manifests_source *src = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	ssize_t r;

	(void)events;
	/* Drain; the names do not matter, any change means a re-read. */
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		any = true;
	if (r < 0 && errno != EAGAIN && errno != EINTR)
		kpx_warn("manifests: %s: inotify read: %s", src->dir,
			 strerror(errno));
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
	int rc;

	*out = NULL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->ifd = -1;
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
	if (inotify_add_watch(src->ifd, dir,
			      IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
				      IN_DELETE | IN_CREATE | IN_ONLYDIR) < 0) {
		rc = -errno;
		kpx_err("manifests: %s: cannot watch: %s", dir, strerror(-rc));
		goto err;
	}
	rc = kpx_timer_new(loop, on_timer, src, &src->timer);
	if (rc) {
		kpx_err("manifests: timer: %s", strerror(-rc));
		goto err;
	}
	rc = load_dir(dir, store, &src->last);
	src->loads = 1;
	src->last_load = kpx_wall_seconds();
	src->last_rc = rc;
	if (rc)
		goto err;
	rc = kpx_loop_watch_fd(loop, src->ifd, EPOLLIN, on_inotify, src);
	if (rc) {
		kpx_err("manifests: watch inotify fd: %s", strerror(-rc));
		goto err;
	}
	kpx_info("manifests: %s: %zu files, %zu objects, %zu errors", dir,
		 src->last.files, src->last.objects, src->last.errors);
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
			       json_object_new_int64((int64_t)src->last.files));
	json_object_object_add(o, "objects",
			       json_object_new_int64((int64_t)src->last.objects));
	json_object_object_add(o, "errors",
			       json_object_new_int64((int64_t)src->last.errors));
	json_object_object_add(o, "loads",
			       json_object_new_int64((int64_t)src->loads));
	json_object_object_add(o, "last_load",
			       json_object_new_double(src->last_load));
	if (src->last_rc)
		json_object_object_add(o, "last_error",
				       json_object_new_string(strerror(-src->last_rc)));
	return o;
}
