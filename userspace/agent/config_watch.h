/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watches the --config file: when its content changes, the callback runs
 * (the agent exits so that the pod restarts with the new file, as
 * kube-proxy does). A ConfigMap volume replaces the file by swapping a
 * symlink in its directory, so the directories of the path and of its
 * target are watched with inotify and the content hash decides.
 * Owns: its inotify fd. Must not: read or apply the configuration.
 */
#ifndef KPX_CONFIG_WATCH_H
#define KPX_CONFIG_WATCH_H

#include <stdint.h>

struct kpx_loop;
struct kpx_config_watch;

/* hash: the content as loaded (cfg->config_hash). 0 or a negative errno. */
int kpx_config_watch_open(struct kpx_loop *loop, const char *path,
			  uint64_t hash, void (*changed)(void *arg), void *arg,
			  struct kpx_config_watch **out);
void kpx_config_watch_close(struct kpx_config_watch *w);

#endif
