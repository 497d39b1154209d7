/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's single-threaded event loop: epoll over file descriptors and
 * timerfds. Every subsystem (sources, HTTP servers, status socket, sync
 * timer) registers here; nothing blocks.
 * Owns: the epoll fd and its registrations. Must not: know any subsystem.
 */
#ifndef KPX_LOOP_H
#define KPX_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct kpx_loop;
struct kpx_timer;

/* events: EPOLLIN/EPOLLOUT mask as received. */
typedef void (*kpx_fd_cb)(int fd, uint32_t events, void *arg);
typedef void (*kpx_timer_cb)(void *arg);

int kpx_loop_new(struct kpx_loop **out);
void kpx_loop_free(struct kpx_loop *loop);
/* Adds or, when fd is registered already, modifies. */
int kpx_loop_watch_fd(struct kpx_loop *loop, int fd, uint32_t events,
		      kpx_fd_cb cb, void *arg);
void kpx_loop_unwatch_fd(struct kpx_loop *loop, int fd);
int kpx_timer_new(struct kpx_loop *loop, kpx_timer_cb cb, void *arg,
		  struct kpx_timer **out);
/* One-shot in ms from now; 0 disarms. Re-arming replaces the deadline. */
int kpx_timer_arm(struct kpx_timer *t, uint64_t ms);
bool kpx_timer_armed(const struct kpx_timer *t);
void kpx_timer_free(struct kpx_timer *t);
/* Runs until kpx_loop_stop(); returns 0 or a negative errno. */
int kpx_loop_run(struct kpx_loop *loop);
/* Runs one iteration, waiting at most timeout_ms (-1: forever). */
int kpx_loop_run_once(struct kpx_loop *loop, int timeout_ms);
void kpx_loop_stop(struct kpx_loop *loop);

/* Monotonic and wall-clock milliseconds. */
uint64_t kpx_now_ms(void);
double kpx_wall_seconds(void);

#endif
