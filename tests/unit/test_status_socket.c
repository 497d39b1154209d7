// SPDX-License-Identifier: Apache-2.0
/*
 * The status socket's path (--state-socket): the agent replaces only a
 * stale socket there, never a file someone else put at that path, and on
 * exit removes only the socket it bound.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/serve.h"
#include "common/loop.h"

static char dir[64], path[128];
static struct kpx_agent agent;

static void setup(void)
{
	strcpy(dir, "/tmp/kpx-statesock-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/kpx.sock", dir);
	memset(&agent, 0, sizeof(agent));
	cr_assert_eq(kpx_loop_new(&agent.loop), 0);
}

static void teardown(void)
{
	char p[160];

	unlink(path);
	snprintf(p, sizeof(p), "%s/other", dir);
	unlink(p);
	rmdir(dir);
	kpx_loop_free(agent.loop);
}

static void write_text(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	cr_assert(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static bool has_text(const char *p, const char *text)
{
	char buf[128] = "";
	FILE *f = fopen(p, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return !strcmp(buf, text);
}

/* --state-socket pointing at a regular file (a typo, a config file) used
 * to delete it: now the agent refuses to start and the file stays. */
Test(state_socket, regular_file_at_the_path_is_an_error_and_kept,
     .init = setup, .fini = teardown)
{
	struct kpx_status_server *srv = NULL;

	write_text(path, "precious\n");
	cr_assert_eq(kpx_status_server_open(&agent, path, &srv), -EEXIST);
	cr_assert_null(srv);
	cr_assert(has_text(path, "precious\n"), "the file was changed");
}

/* A socket left by an agent that died (nobody answers) is replaced. */
Test(state_socket, stale_socket_is_replaced, .init = setup, .fini = teardown)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct kpx_status_server *srv = NULL;
	struct stat st;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	cr_assert(fd >= 0);
	strcpy(sa.sun_path, path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* bound, never listened: connect is refused */
	cr_assert_eq(kpx_status_server_open(&agent, path, &srv), 0);
	cr_assert(srv);
	cr_assert(kpx_state_socket_live(path));
	kpx_status_server_close(srv);
	cr_assert_eq(lstat(path, &st), -1, "own socket removed on close");
}

/* What replaced our socket while the agent ran is not ours to remove. */
Test(state_socket, close_removes_only_its_own_socket, .init = setup,
     .fini = teardown)
{
	struct kpx_status_server *srv = NULL;
	char other[160];

	cr_assert_eq(kpx_status_server_open(&agent, path, &srv), 0);
	snprintf(other, sizeof(other), "%s/other", dir);
	write_text(other, "someone else's\n");
	cr_assert_eq(rename(other, path), 0);
	kpx_status_server_close(srv);
	cr_assert(has_text(path, "someone else's\n"),
		  "a file that replaced the socket was removed");
}
