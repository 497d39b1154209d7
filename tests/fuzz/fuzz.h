/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the libFuzzer targets in tests/fuzz (see run.sh): the input as
 * a C string or as a file path, and a quiet log.
 * Owns nothing. Must not: touch the network, the kernel or files other
 * than its own memfd.
 */
#ifndef KPX_FUZZ_H
#define KPX_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Logs are formatted and escaped (that code is fuzzed too), not written. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	kpx_log_silent = 1;
	kpx_log_verbosity = 9;
	return 0;
}

/* A NUL-terminated copy (the parsers take C strings); free() it. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The input as a file for the readers that take a path: a memfd, named
 * /proc/self/fd/N. Returns the fd (close it), -1 on failure. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path,
			    size_t len)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

#endif
