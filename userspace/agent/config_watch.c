// SPDX-License-Identifier: Apache-2.0
#include "agent/config_watch.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "agent/config.h"
#include "common/log.h"
#include "common/loop.h"

struct kpx_config_watch {
	struct kpx_loop *loop;
	int fd;
	char path[PATH_MAX];
	uint64_t hash;
	void (*changed)(void *arg);
	void *arg;
	int fired;
};

static void on_event(int fd, uint32_t events, void *arg)
{
	struct kpx_config_watch *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	uint64_t h = 0;
	int err;

	(void)events;
	while (read(fd, buf, sizeof(buf)) > 0)
		; /* which entry changed does not matter: the content does */
	if (w->fired)
		return;
	err = kpx_config_file_hash(w->path, &h);
	/* Gone, unreadable or different: what the agent runs with is no
	 * longer what the file says. Touching it (same bytes) is not. */
	if (!err && h == w->hash)
		return;
	w->fired = 1;
	w->changed(w->arg);
}

static int watch_dir_of(int fd, const char *path)
{
	char copy[PATH_MAX];

	if (strlen(path) >= sizeof(copy))
		return -ENAMETOOLONG;
	strcpy(copy, path);
	if (inotify_add_watch(fd, dirname(copy),
			      IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO |
				      IN_MOVED_FROM | IN_CREATE | IN_DELETE |
				      IN_ATTRIB | IN_DELETE_SELF |
				      IN_MOVE_SELF) < 0)
		return -errno;
	return 0;
}

int kpx_config_watch_open(struct kpx_loop *loop, const char *path,
			  uint64_t hash, void (*changed)(void *arg), void *arg,
			  struct kpx_config_watch **out)
{
	struct kpx_config_watch *w = calloc(1, sizeof(*w));
	char real[PATH_MAX];
	int err;

	if (!w)
		return -ENOMEM;
	if (strlen(path) >= sizeof(w->path)) {
		free(w);
		return -ENAMETOOLONG;
	}
	strcpy(w->path, path);
	w->loop = loop;
	w->hash = hash;
	w->changed = changed;
	w->arg = arg;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		err = -errno;
		goto fail;
	}
	/* The file's directory (a ConfigMap's ..data symlink swap shows
	 * there), and the one holding its target (an in-place edit). */
	err = watch_dir_of(w->fd, path);
	if (!err && realpath(path, real) && strcmp(real, path))
		err = watch_dir_of(w->fd, real);
	if (!err)
		err = kpx_loop_watch_fd(loop, w->fd, EPOLLIN, on_event, w);
	if (err)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w->fd >= 0)
		close(w->fd);
	free(w);
	return err;
}

void kpx_config_watch_close(struct kpx_config_watch *w)
{
	if (!w)
		return;
	kpx_loop_unwatch_fd(w->loop, w->fd);
	close(w->fd);
	free(w);
}
