// SPDX-License-Identifier: Apache-2.0
/*
 * Shared loading rules for kpx BPF objects (see loader.h): bpffs, the pin
 * directory, and map sizes from the config, applied by map name so the
 * socket-LB and nodeport objects agree with each other and with the pins.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>

#include "bpf/kpx_abi.h"
#include "bpf/loader.h"
#include "bpf/map_walk.h"
#include "bpf/map_writer.h"
#include "common/log.h"

#define BPFFS_MOUNT "/sys/fs/bpf"

static bool is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

int kpx_bpf_prepare_root(const struct kpx_config *cfg)
{
	const char *root = cfg->bpf_root[0] ? cfg->bpf_root : "/sys/fs/bpf/kpx";
	char parent[PATH_MAX];
	int err;

	/* Only mount the default bpffs location; a custom --bpf-root must
	 * already live on a bpffs (tests mount their own). */
	if (!is_bpffs(BPFFS_MOUNT) && strncmp(root, BPFFS_MOUNT "/",
					      strlen(BPFFS_MOUNT "/")) == 0) {
		if (mkdir(BPFFS_MOUNT, 0700) && errno != EEXIST) {
			err = -errno;
			kpx_err("bpffs: mkdir %s: %s", BPFFS_MOUNT, strerror(-err));
			return err;
		}
		if (mount("bpffs", BPFFS_MOUNT, "bpf", 0, "mode=0700")) {
			err = -errno;
			kpx_err("bpffs: mount at %s: %s", BPFFS_MOUNT,
				strerror(-err));
			return err;
		}
		kpx_info("mounted bpffs at %s", BPFFS_MOUNT);
	}
	err = mkdir_p(root);
	if (err) {
		kpx_err("bpf root %s: %s", root, strerror(-err));
		return err;
	}
	snprintf(parent, sizeof(parent), "%s", root);
	if (!is_bpffs(parent)) {
		kpx_err("bpf root %s is not on a bpf filesystem", root);
		return -ENOTSUP;
	}
	return 0;
}

/* The pid holding a flock on the inode of st, from /proc/locks; 0 if not
 * found. Lines look like "1: FLOCK  ADVISORY  WRITE 1234 00:27:4711 0 EOF"
 * (device numbers in hex); a waiter's line has "->" before FLOCK. */
static pid_t flock_holder(const struct stat *st)
{
	FILE *f = fopen("/proc/locks", "re");
	char line[256];
	pid_t found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char type[16];
		unsigned int maj, min;
		unsigned long ino;
		int pid;

		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", type, &pid,
			   &maj, &min, &ino) != 5 ||
		    strcmp(type, "FLOCK"))
			continue;
		if (maj == major(st->st_dev) && min == minor(st->st_dev) &&
		    ino == st->st_ino && pid > 0 && pid != getpid())
			found = pid;
	}
	fclose(f);
	return found;
}

int kpx_bpf_lock_root(const struct kpx_config *cfg, int *fd, pid_t *holder)
{
	const char *root = cfg->bpf_root[0] ? cfg->bpf_root : "/sys/fs/bpf/kpx";
	struct stat st;
	int d, err;

	*fd = -1;
	*holder = 0;
	d = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0)
		return -errno;
	if (flock(d, LOCK_EX | LOCK_NB) == 0) {
		*fd = d;
		return 0;
	}
	err = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (err == -EBUSY && fstat(d, &st) == 0)
		*holder = flock_holder(&st);
	close(d);
	return err;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

/* The capacity of each shared map, by name, from the config. */
static int map_size(const struct kpx_config *cfg, const char *name,
		    uint32_t *out)
{
	uint32_t svcs = or_default(cfg->bpf_services_max, KPX_DEF_SERVICES_MAX);
	uint32_t bes = or_default(cfg->bpf_backends_max, KPX_DEF_BACKENDS_MAX);
	uint32_t ct = or_default(cfg->bpf_ct_max, KPX_DEF_CT_MAX);
	uint32_t aff = or_default(cfg->bpf_affinity_max, KPX_DEF_AFFINITY_MAX);

	if (!strcmp(name, "kpx_svc") || !strcmp(name, "kpx_svc_meta") ||
	    !strcmp(name, "kpx_src_range"))
		*out = svcs;
	else if (!strcmp(name, "kpx_svc_stats"))
		*out = kpx_map_writer_stats_capacity(svcs);
	else if (!strcmp(name, "kpx_slots"))
		*out = kpx_map_writer_slots_capacity(svcs, bes);
	else if (!strcmp(name, "kpx_maglev"))
		/* Two generations per entry with maglev; a token size
		 * otherwise (its bucket array would cost 16 B x 2 x svcs). A
		 * later switch to maglev resizes it (see migrate_pin). */
		*out = cfg->lb_algorithm == KPX_LB_MAGLEV ? 2 * svcs : 64;
	else if (!strcmp(name, "kpx_backends"))
		*out = bes;
	else if (!strcmp(name, "kpx_backend_stats"))
		*out = kpx_map_writer_stats_capacity(bes);
	else if (!strcmp(name, "kpx_revnat") || !strcmp(name, "kpx_ct"))
		*out = ct;
	else if (!strcmp(name, "kpx_affinity"))
		*out = aff;
	else
		return -ENOENT;
	return 0;
}

/*
 * Hash maps written only by userspace and read by the programs: no
 * preallocation, so memory follows the entries in use instead of the
 * capacity (which can then be generous). Maps the datapath inserts into
 * stay preallocated: LRU maps must be, and an allocation per new flow is
 * what they avoid.
 */
static bool no_prealloc(const char *name)
{
	return !strcmp(name, "kpx_svc") || !strcmp(name, "kpx_backends") ||
	       !strcmp(name, "kpx_slots") || !strcmp(name, "kpx_svc_meta") ||
	       !strcmp(name, "kpx_maglev");
}

/* Sets a `const volatile` global in .rodata by name (before load). */
static int set_rodata_u32(struct bpf_object *obj, const char *var, uint32_t v)
{
	struct bpf_map *map = NULL, *m;
	const struct btf_type *sec;
	const struct btf_var_secinfo *vs;
	struct btf *btf = bpf_object__btf(obj);
	size_t sz;
	char *data;
	int id;

	bpf_object__for_each_map(m, obj) {
		const char *n = bpf_map__name(m);
		size_t l = strlen(n);

		if (l >= 7 && !strcmp(n + l - 7, ".rodata")) {
			map = m;
			break;
		}
	}
	if (!map || !btf)
		return -ENOENT;
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (id < 0)
		return -ENOENT;
	sec = btf__type_by_id(btf, id);
	data = (char *)bpf_map__initial_value(map, &sz);
	if (!data)
		return -ENOENT;
	vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *t = btf__type_by_id(btf, vs->type);
		const char *n = btf__name_by_offset(btf, t->name_off);

		if (strcmp(n, var))
			continue;
		if (vs->size != sizeof(v) || vs->offset + sizeof(v) > sz)
			return -EINVAL;
		memcpy(data + vs->offset, &v, sizeof(v));
		return 0;
	}
	return -ENOENT;
}

static void drop_pin(struct bpf_map *map, const char *path, const char *why)
{
	kpx_warn("map %s: pinned map at %s %s; recreating it empty (the first "
		 "sync rewrites services; its other state is lost)",
		 bpf_map__name(map), path, why);
	unlink(path);
}

static bool is_percpu(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_PERCPU_HASH ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

/* Key by key, for maps without batch operations (LPM trie). */
static int copy_by_key(int ofd, int nfd, const struct bpf_map_info *oi,
		       size_t vsz, __u32 *copied)
{
	uint8_t *k = malloc(oi->key_size), *nk = malloc(oi->key_size);
	uint8_t *v = malloc(vsz);
	const void *prev = NULL;
	int err = 0;

	if (!k || !nk || !v) {
		err = -ENOMEM;
		goto out;
	}
	while (bpf_map_get_next_key(ofd, prev, nk) == 0) {
		memcpy(k, nk, oi->key_size);
		prev = k;
		if (bpf_map_lookup_elem(ofd, k, v))
			continue;
		if (bpf_map_update_elem(nfd, k, v, BPF_ANY)) {
			err = -errno;
			break;
		}
		(*copied)++;
	}
out:
	free(k);
	free(nk);
	free(v);
	return err;
}

struct copy {
	int nfd;
	bool array;
	__u32 new_max;
	__u32 *copied;
};

static int copy_chunk(const void *keys, const void *vals, uint32_t n,
		      void *arg)
{
	struct copy *c = arg;
	int stop = 0;

	if (c->array) {
		/* Ascending indices: keep the ones below new_max. */
		__u32 m = 0;

		while (m < n &&
		       *(const __u32 *)((const uint8_t *)keys + (size_t)m * 4) <
			       c->new_max)
			m++;
		if (m < n)
			stop = 1; /* nothing further fits */
		n = m;
	}
	if (n) {
		__u32 u = n;

		if (bpf_map_update_batch(c->nfd, keys, vals, &u, NULL))
			return -errno;
		*c->copied += n;
	}
	return stop;
}

/* Copies every entry of ofd into nfd (arrays: the indices nfd has). */
static int copy_entries(int ofd, int nfd, const struct bpf_map_info *oi,
			__u32 new_max, __u32 *copied)
{
	struct copy c = { .nfd = nfd,
			  .array = oi->type == BPF_MAP_TYPE_ARRAY ||
				   oi->type == BPF_MAP_TYPE_PERCPU_ARRAY,
			  .new_max = new_max,
			  .copied = copied };
	int ncpu = libbpf_num_possible_cpus();
	struct kpx_map_walk mw = { .fd = ofd,
				   .key_size = oi->key_size,
				   .value_size = oi->value_size,
				   .chunk = 1024 };
	int err;

	if (is_percpu(oi->type))
		mw.value_size = ((mw.value_size + 7) & ~(size_t)7) *
				(size_t)(ncpu > 0 ? ncpu : 1);
	if (oi->key_size > 64) /* the batch tokens of kpx_map_walk */
		return -EINVAL;
	err = kpx_map_walk(&mw, copy_chunk, &c);
	if (err && kpx_map_no_batch(mw.first_err))
		return copy_by_key(ofd, nfd, oi, mw.value_size, copied);
	return err;
}

/*
 * A pinned map is reused as is when it has exactly the shape this config
 * creates. When only its capacity or flags differ (an upgrade that changed
 * the defaults or BPF_F_NO_PREALLOC, or new capacity flags), libbpf could
 * not reuse it, and recreating it empty would cost every service entry,
 * conntrack entry and affinity until the first sync. Instead its entries
 * are copied into a new map of the wanted shape, which is pinned in its
 * place: programs still attached keep the old
 * map until this agent swaps them, established flows and affinities
 * carry over. A pin bigger than asked (same flags) is kept as it is.
 * Another type, key or value size (another ABI, another maglev table size)
 * cannot be copied, nor entries that do not fit a smaller capacity (flags
 * changed too): then the map is recreated empty, which is logged.
 */
static void migrate_pin(struct bpf_map *map)
{
	LIBBPF_OPTS(bpf_map_create_opts, co);
	const char *path = bpf_map__pin_path(map);
	const char *name = bpf_map__name(map);
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), copied = 0;
	__u32 max = bpf_map__max_entries(map);
	int fd, nfd = -1, err;

	if (!path)
		return;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		close(fd);
		drop_pin(map, path, "cannot be inspected");
		return;
	}
	if (info.type == bpf_map__type(map) &&
	    info.key_size == bpf_map__key_size(map) &&
	    info.value_size == bpf_map__value_size(map) &&
	    info.max_entries == max &&
	    info.map_flags == bpf_map__map_flags(map)) {
		close(fd);
		return;
	}
	if (info.type != bpf_map__type(map) ||
	    info.key_size != bpf_map__key_size(map) ||
	    info.value_size != bpf_map__value_size(map)) {
		close(fd);
		drop_pin(map, path, "has another type or layout");
		return;
	}
	if (info.max_entries > max &&
	    info.map_flags == bpf_map__map_flags(map) &&
	    bpf_map__set_max_entries(map, info.max_entries) == 0) {
		/* Bigger than asked (capacity flags lowered, or maglev
		 * turned off): reused as is, nothing is lost; ids stay
		 * below the configured capacity. */
		close(fd);
		kpx_info("map %s: pinned capacity %u is above the configured "
			 "%u; kept (kpx cleanup removes it)", name,
			 info.max_entries, max);
		return;
	}
	co.map_flags = bpf_map__map_flags(map);
	nfd = bpf_map_create(bpf_map__type(map), name, info.key_size,
			     info.value_size, max, &co);
	if (nfd < 0) {
		err = -errno;
		kpx_err("map %s: creating it with capacity %u: %s", name, max,
			strerror(-err));
		close(fd);
		drop_pin(map, path, "cannot be resized");
		return;
	}
	err = copy_entries(fd, nfd, &info, max, &copied);
	close(fd);
	if (err) {
		char why[128];

		snprintf(why, sizeof(why),
			 "cannot be copied into capacity %u (%s after %u "
			 "entries)", max,
			 err == -E2BIG || err == -ENOSPC ? "map full"
							 : strerror(-err),
			 copied);
		close(nfd);
		drop_pin(map, path, why);
		return;
	}
	/* bpffs has no rename: unlink and pin again. Only another process
	 * opening the pin in between could miss it; attached programs hold
	 * the old map. */
	if (unlink(path) || bpf_obj_pin(nfd, path)) {
		err = -errno;
		close(nfd);
		kpx_err("map %s: replacing pin %s: %s", name, path,
			strerror(-err));
		drop_pin(map, path, "cannot be replaced");
		return;
	}
	close(nfd);
	kpx_info("map %s: capacity %u -> %u, flags %#x -> %#x; %u entries "
		 "carried over", name, info.max_entries, max, info.map_flags,
		 bpf_map__map_flags(map), copied);
}

int kpx_bpf_size_maps(struct bpf_object *obj, const struct kpx_config *cfg)
{
	uint32_t msize = or_default(cfg->maglev_table_size,
				    KPX_MAGLEV_DEFAULT_SIZE);
	struct bpf_map *map;
	int err;

	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		uint32_t n;

		if (!strcmp(name, "kpx_maglev")) {
			err = bpf_map__set_value_size(map, 4 * msize);
			if (err) {
				kpx_err("map kpx_maglev: value size %u: %s",
					4 * msize, strerror(-err));
				return err;
			}
		}
		if (map_size(cfg, name, &n) == 0) {
			err = bpf_map__set_max_entries(map, n);
			if (err) {
				kpx_err("map %s: max_entries %u: %s", name, n,
					strerror(-err));
				return err;
			}
		}
		if (no_prealloc(name)) {
			err = bpf_map__set_map_flags(
				map, bpf_map__map_flags(map) | BPF_F_NO_PREALLOC);
			if (err) {
				kpx_err("map %s: flags: %s", name, strerror(-err));
				return err;
			}
		}
		if (bpf_map__pin_path(map))
			migrate_pin(map);
	}
	err = set_rodata_u32(obj, "kpx_maglev_size", msize);
	if (err && err != -ENOENT) {
		kpx_err("bpf object %s: kpx_maglev_size: %s",
			bpf_object__name(obj), strerror(-err));
		return err;
	}
	/* Only the tc/XDP object has the flood guard (-ENOENT elsewhere). */
	err = set_rodata_u32(obj, "kpx_new_flow_rate", cfg->bpf_new_flow_rate);
	if (err && err != -ENOENT) {
		kpx_err("bpf object %s: kpx_new_flow_rate: %s",
			bpf_object__name(obj), strerror(-err));
		return err;
	}
	return 0;
}

/* ---- ABI version of the pinned maps ---- */

/* Pin paths: --bpf-root (< PATH_MAX, checked by its mkdir) plus short
 * fixed names; truncation cannot reach a valid path. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/*
 * The KPX_ABI_VERSION that last changed each pinned map's key or value
 * layout or meaning. Pins written by version v keep a map when
 * changed_in <= v <= KPX_ABI_VERSION: its layout is the same since (new
 * flag bits are rewritten by the first sync; capacities and flags are
 * migrated by copy, migrate_pin). Older pins of a changed map, and every
 * pin of an unknown version (a newer build, an unreadable version), are
 * recreated empty. Bump KPX_ABI_VERSION and the map's entry together.
 */
static const struct {
	const char *name;
	uint32_t changed_in;
} abi_maps[] = {
	{ "kpx_svc", 1 },	    { "kpx_slots", 1 },
	{ "kpx_backends", 1 },	    { "kpx_maglev", 1 },
	{ "kpx_revnat", 1 },	    { "kpx_affinity", 1 },
	{ "kpx_svc_meta", 1 },	    { "kpx_drops", 1 },
	{ "kpx_svc_stats", 1 },	    { "kpx_backend_stats", 1 },
	{ "kpx_config", 1 },	    { "kpx_ct", 1 },
	{ "kpx_src_range", 1 },	    { "kpx_sk_revnat", 1 },
	{ "kpx_sock_slots", 1 },    { "kpx_cluster_cidr", 2 },
	{ "kpx_abi_version", 2 },
};

bool kpx_bpf_abi_keep(const char *map, uint32_t pinned)
{
	if (pinned == KPX_ABI_VERSION)
		return true;
	if (pinned == 0 || pinned > KPX_ABI_VERSION)
		return false;
	for (size_t i = 0; i < sizeof(abi_maps) / sizeof(abi_maps[0]); i++)
		if (!strcmp(abi_maps[i].name, map))
			return pinned >= abi_maps[i].changed_in;
	return false;
}

static const char *root_path(const struct kpx_config *cfg)
{
	return cfg->bpf_root[0] ? cfg->bpf_root : "/sys/fs/bpf/kpx";
}

/* The version the pins under cfg's root were written by: 0 when none is
 * pinned (a fresh root), 1 when maps are pinned without a version (before
 * versions were stored), UINT32_MAX when it cannot be read. */
static uint32_t pinned_version(const struct kpx_config *cfg)
{
	char path[PATH_MAX];
	uint32_t key = 0, v = UINT32_MAX;
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/kpx_abi_version", root_path(cfg));
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		if (bpf_map_lookup_elem(fd, &key, &v) || v == 0)
			v = UINT32_MAX;
		close(fd);
		return v;
	}
	snprintf(path, sizeof(path), "%s/kpx_svc", root_path(cfg));
	return stat(path, &st) ? 0 : 1;
}

int kpx_bpf_abi_check(const struct kpx_config *cfg)
{
	uint32_t v = pinned_version(cfg);
	size_t kept = 0, recreated = 0;

	if (v == 0 || v == KPX_ABI_VERSION)
		return 0;
	if (v == UINT32_MAX)
		kpx_warn("bpf: pinned maps under %s have an unreadable ABI "
			 "version; none is reused", root_path(cfg));
	else
		kpx_info("bpf: pinned maps under %s are ABI version %u, this "
			 "build is %u", root_path(cfg), v, KPX_ABI_VERSION);
	for (size_t i = 0; i < sizeof(abi_maps) / sizeof(abi_maps[0]); i++) {
		char path[PATH_MAX];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", root_path(cfg),
			 abi_maps[i].name);
		if (stat(path, &st))
			continue;
		if (kpx_bpf_abi_keep(abi_maps[i].name, v)) {
			kpx_dbg(1, "map %s: layout unchanged since ABI version "
				   "%u; reused", abi_maps[i].name, v);
			kept++;
			continue;
		}
		if (unlink(path)) {
			int err = -errno;

			kpx_err("map %s: removing pin %s: %s", abi_maps[i].name,
				path, strerror(-err));
			return err;
		}
		kpx_warn("map %s: pinned by ABI version %u, whose layout this "
			 "build (%u) does not read; recreated empty",
			 abi_maps[i].name, v, KPX_ABI_VERSION);
		recreated++;
	}
	kpx_info("bpf: ABI migration %u -> %u: %zu maps reused, %zu recreated",
		 v == UINT32_MAX ? 0 : v, KPX_ABI_VERSION, kept, recreated);
	return 0;
}

int kpx_bpf_abi_store(int version_map_fd)
{
	uint32_t key = 0, v = KPX_ABI_VERSION;

	if (bpf_map_update_elem(version_map_fd, &key, &v, BPF_ANY)) {
		int err = -errno;

		kpx_err("map kpx_abi_version: %s", strerror(-err));
		return err;
	}
	return 0;
}
