/*
 * fsprobe: the parts of the boot check's workload a shell cannot do.
 * Static, no dependencies; run inside the test VM.
 *
 *   fsprobe mmap FILE     shared mapping: write a pattern through it, msync,
 *                         munmap, read it back with read(2) and compare
 *   fsprobe sparse FILE   writes at 0, 1 MiB and 5 MiB + 17 (holes between),
 *                         then checks every byte of the file
 *   fsprobe falloc FILE   fallocate 256 KiB, write into the middle, check
 *   fsprobe mmapread FILE read-only mapping of an existing file (a fault on
 *                         each page, readahead) compared with read(2)
 *
 * Exit status 0 on success; otherwise prints "fsprobe: <what failed>" and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *what, const char *file)
{
	fprintf(stderr, "fsprobe: %s %s: %s\n", what, file, strerror(errno));
	return 1;
}

static unsigned char pattern(long off)
{
	return (unsigned char)(off * 31 + (off >> 12));
}

static int check_range(int fd, long start, long len, int hole, const char *file)
{
	unsigned char buf[4096];
	long done = 0;

	while (done < len) {
		long want = len - done < (long)sizeof(buf) ? len - done : (long)sizeof(buf);
		ssize_t n = pread(fd, buf, want, start + done);

		if (n != want)
			return fail("short read of", file);
		for (long i = 0; i < n; i++) {
			unsigned char expect = hole ? 0 : pattern(start + done + i);

			if (buf[i] != expect) {
				errno = EIO;
				fprintf(stderr, "fsprobe: %s: byte %ld is %u, not %u\n",
					file, start + done + i, buf[i], expect);
				return 1;
			}
		}
		done += n;
	}
	return 0;
}

static int write_range(int fd, long start, long len, const char *file)
{
	unsigned char buf[4096];
	long done = 0;

	while (done < len) {
		long n = len - done < (long)sizeof(buf) ? len - done : (long)sizeof(buf);

		for (long i = 0; i < n; i++)
			buf[i] = pattern(start + done + i);
		if (pwrite(fd, buf, n, start + done) != n)
			return fail("short write of", file);
		done += n;
	}
	return 0;
}

static int probe_mmap(const char *file)
{
	const long len = 3 * 4096 + 100;
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	unsigned char *map;

	if (fd < 0 || ftruncate(fd, len))
		return fail("create", file);
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return fail("mmap", file);
	for (long i = 0; i < len; i++)
		map[i] = pattern(i);
	if (msync(map, len, MS_SYNC) || munmap(map, len))
		return fail("msync", file);
	if (check_range(fd, 0, len, 0, file))
		return 1;
	return close(fd) ? fail("close", file) : 0;
}

static int probe_sparse(const char *file)
{
	const long at[] = { 0, 1L << 20, (5L << 20) + 17 };
	const long len = 10000;
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	long prev = 0;

	if (fd < 0)
		return fail("create", file);
	for (int i = 0; i < 3; i++)
		if (write_range(fd, at[i], len, file))
			return 1;
	if (fsync(fd))
		return fail("fsync", file);
	for (int i = 0; i < 3; i++) {
		if (at[i] > prev && check_range(fd, prev, at[i] - prev, 1, file))
			return 1;
		if (check_range(fd, at[i], len, 0, file))
			return 1;
		prev = at[i] + len;
	}
	return close(fd) ? fail("close", file) : 0;
}

static int probe_falloc(const char *file)
{
	const long len = 256 * 1024;
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	struct stat st;

	if (fd < 0)
		return fail("create", file);
	if (fallocate(fd, 0, 0, len))
		return fail("fallocate", file);
	if (fstat(fd, &st) || st.st_size != len) {
		errno = EIO;
		return fail("size after fallocate of", file);
	}
	if (write_range(fd, 70000, 5000, file) || fsync(fd))
		return 1;
	if (check_range(fd, 0, 70000, 1, file) || check_range(fd, 70000, 5000, 0, file) ||
	    check_range(fd, 75000, len - 75000, 1, file))
		return 1;
	return close(fd) ? fail("close", file) : 0;
}

static int probe_mmapread(const char *file)
{
	unsigned char buf[4096];
	int fd = open(file, O_RDONLY);
	unsigned char *map;
	struct stat st;

	if (fd < 0 || fstat(fd, &st))
		return fail("open", file);
	if (st.st_size == 0)
		return close(fd) ? fail("close", file) : 0;
	map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return fail("mmap", file);
	for (long off = 0; off < st.st_size; off += sizeof(buf)) {
		long want = st.st_size - off < (long)sizeof(buf) ? st.st_size - off : (long)sizeof(buf);

		if (pread(fd, buf, want, off) != want)
			return fail("short read of", file);
		if (memcmp(buf, map + off, want)) {
			errno = EIO;
			return fail("mapping differs from read(2) in", file);
		}
	}
	if (munmap(map, st.st_size))
		return fail("munmap", file);
	return close(fd) ? fail("close", file) : 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: fsprobe mmap|sparse|falloc|mmapread FILE\n");
		return 2;
	}
	if (!strcmp(argv[1], "mmap"))
		return probe_mmap(argv[2]);
	if (!strcmp(argv[1], "sparse"))
		return probe_sparse(argv[2]);
	if (!strcmp(argv[1], "falloc"))
		return probe_falloc(argv[2]);
	if (!strcmp(argv[1], "mmapread"))
		return probe_mmapread(argv[2]);
	fprintf(stderr, "fsprobe: unknown probe %s\n", argv[1]);
	return 2;
}
