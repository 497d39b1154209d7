// SPDX-License-Identifier: Apache-2.0
#include "common/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct fd_watch {
	kpx_fd_cb cb;
	void *arg;
	bool used;
};

struct kpx_loop {
	int epfd;
	bool stop;
	struct fd_watch *watches; /* indexed by fd */
	int n_watches;
};

struct kpx_timer {
	struct kpx_loop *loop;
	int fd;
	bool armed;
	kpx_timer_cb cb;
	void *arg;
};

int kpx_loop_new(struct kpx_loop **out)
{
	struct kpx_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		free(loop);
		return -errno;
	}
	*out = loop;
	return 0;
}

void kpx_loop_free(struct kpx_loop *loop)
{
	if (!loop)
		return;
	close(loop->epfd);
	free(loop->watches);
	free(loop);
}

int kpx_loop_watch_fd(struct kpx_loop *loop, int fd, uint32_t events,
		      kpx_fd_cb cb, void *arg)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };
	bool existing;

	if (fd < 0)
		return -EBADF;
	if (fd >= loop->n_watches) {
		int n = fd + 64;
		struct fd_watch *w = realloc(loop->watches, n * sizeof(*w));

		if (!w)
			return -ENOMEM;
		memset(w + loop->n_watches, 0,
		       (n - loop->n_watches) * sizeof(*w));
		loop->watches = w;
		loop->n_watches = n;
	}
	existing = loop->watches[fd].used;
	if (epoll_ctl(loop->epfd, existing ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd,
		      &ev))
		return -errno;
	loop->watches[fd] = (struct fd_watch){ .cb = cb, .arg = arg,
					       .used = true };
	return 0;
}

void kpx_loop_unwatch_fd(struct kpx_loop *loop, int fd)
{
	if (fd < 0 || fd >= loop->n_watches || !loop->watches[fd].used)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	loop->watches[fd].used = false;
}

static void timer_fired(int fd, uint32_t events, void *arg)
{
	struct kpx_timer *t = arg;
	uint64_t expirations;

	(void)events;
	if (read(fd, &expirations, sizeof(expirations)) < 0)
		return;
	t->armed = false;
	t->cb(t->arg);
}

int kpx_timer_new(struct kpx_loop *loop, kpx_timer_cb cb, void *arg,
		  struct kpx_timer **out)
{
	struct kpx_timer *t = calloc(1, sizeof(*t));
	int err;

	if (!t)
		return -ENOMEM;
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->fd < 0) {
		err = -errno;
		free(t);
		return err;
	}
	t->loop = loop;
	t->cb = cb;
	t->arg = arg;
	err = kpx_loop_watch_fd(loop, t->fd, EPOLLIN, timer_fired, t);
	if (err) {
		close(t->fd);
		free(t);
		return err;
	}
	*out = t;
	return 0;
}

int kpx_timer_arm(struct kpx_timer *t, uint64_t ms)
{
	struct itimerspec its = { 0 };

	if (ms) {
		its.it_value.tv_sec = ms / 1000;
		its.it_value.tv_nsec = (ms % 1000) * 1000000;
	}
	if (timerfd_settime(t->fd, 0, &its, NULL))
		return -errno;
	t->armed = ms != 0;
	return 0;
}

bool kpx_timer_armed(const struct kpx_timer *t)
{
	return t->armed;
}

void kpx_timer_free(struct kpx_timer *t)
{
	if (!t)
		return;
	kpx_loop_unwatch_fd(t->loop, t->fd);
	close(t->fd);
	free(t);
}

int kpx_loop_run_once(struct kpx_loop *loop, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(loop->epfd, evs, 32, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;

		/* A callback may unregister fds later in this batch. */
		if (fd < loop->n_watches && loop->watches[fd].used)
			loop->watches[fd].cb(fd, evs[i].events,
					     loop->watches[fd].arg);
	}
	return n;
}

int kpx_loop_run(struct kpx_loop *loop)
{
	loop->stop = false;
	while (!loop->stop) {
		int err = kpx_loop_run_once(loop, -1);

		if (err < 0)
			return err;
	}
	return 0;
}

void kpx_loop_stop(struct kpx_loop *loop)
{
	loop->stop = true;
}

uint64_t kpx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double kpx_wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
