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
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>

#include "bpf/kpx_abi.h"
#include "bpf/loader.h"
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
	    !strcmp(name, "kpx_svc_stats") || !strcmp(name, "kpx_src_range"))
		*out = svcs;
	else if (!strcmp(name, "kpx_slots"))
		*out = kpx_map_writer_slots_capacity(svcs, bes);
	else if (!strcmp(name, "kpx_maglev"))
		*out = 2 * svcs;
	else if (!strcmp(name, "kpx_backends") ||
		 !strcmp(name, "kpx_backend_stats"))
		*out = bes;
	else if (!strcmp(name, "kpx_revnat") || !strcmp(name, "kpx_ct"))
		*out = ct;
	else if (!strcmp(name, "kpx_affinity"))
		*out = aff;
	else
		return -ENOENT;
	return 0;
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

/*
 * A pin whose type/size/flags differ from what we are about to create
 * (capacity flags changed, or a layout change) cannot be reused: libbpf
 * would fail the load. Such a pin is removed, so the map is recreated
 * empty; this loses its state, which is logged.
 */
static void drop_incompatible_pin(struct bpf_map *map)
{
	const char *path = bpf_map__pin_path(map);
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd;

	if (!path)
		return;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
	    info.type == bpf_map__type(map) &&
	    info.key_size == bpf_map__key_size(map) &&
	    info.value_size == bpf_map__value_size(map) &&
	    info.max_entries == bpf_map__max_entries(map) &&
	    info.map_flags == bpf_map__map_flags(map)) {
		close(fd);
		return;
	}
	close(fd);
	kpx_warn("map %s: pinned map at %s has another layout or capacity; "
		 "recreating it (its entries are lost)",
		 bpf_map__name(map), path);
	unlink(path);
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
		if (bpf_map__pin_path(map))
			drop_incompatible_pin(map);
	}
	err = set_rodata_u32(obj, "kpx_maglev_size", msize);
	if (err && err != -ENOENT) {
		kpx_err("bpf object %s: kpx_maglev_size: %s",
			bpf_object__name(obj), strerror(-err));
		return err;
	}
	return 0;
}
