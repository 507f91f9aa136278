/* Reference for pyxdp.bench.map_ops: the same map operations through libbpf, in C.
 *
 * usage: map_ops_ref hash|lpm N CHUNK
 * prints one JSON object: nanoseconds per element for each operation.
 * Keys: hash u32 i -> u64 i; lpm {u32 32; be32 10.0.0.0 + i} -> u64 i.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int lpm = strcmp(argv[1], "lpm") == 0;
	uint32_t n = strtoul(argv[2], NULL, 0), chunk = strtoul(argv[3], NULL, 0);
	uint32_t ks = lpm ? 8 : 4, vs = 8;
	uint8_t *keys = malloc((size_t)n * ks), *out_keys = malloc((size_t)n * ks);
	uint64_t *vals = malloc((size_t)n * vs), *out_vals = malloc((size_t)n * vs);
	for (uint32_t i = 0; i < n; i++) {
		if (lpm) {
			uint32_t pl = 32, addr = htonl(0x0a000000u + i);
			memcpy(keys + (size_t)i * 8, &pl, 4);
			memcpy(keys + (size_t)i * 8 + 4, &addr, 4);
		} else {
			memcpy(keys + (size_t)i * 4, &i, 4);
		}
		vals[i] = i;
	}
	LIBBPF_OPTS(bpf_map_create_opts, copts, .map_flags = lpm ? BPF_F_NO_PREALLOC : 0);
	enum bpf_map_type type = lpm ? BPF_MAP_TYPE_LPM_TRIE : BPF_MAP_TYPE_HASH;
	double t0, r_upd, r_look, r_bupd, r_blook, r_bdel;
	uint64_t v, sum = 0;

	int fd = bpf_map_create(type, "ref", ks, vs, n, &copts);
	if (fd < 0)
		die("create");
	t0 = now();
	for (uint32_t i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, keys + (size_t)i * ks, &vals[i], BPF_ANY))
			die("update");
	r_upd = now() - t0;
	t0 = now();
	for (uint32_t i = 0; i < n; i++) {
		if (bpf_map_lookup_elem(fd, keys + (size_t)i * ks, &v))
			die("lookup");
		sum += v;
	}
	r_look = now() - t0;
	close(fd);

	fd = bpf_map_create(type, "ref", ks, vs, n, &copts);
	if (fd < 0)
		die("create");
	LIBBPF_OPTS(bpf_map_batch_opts, bopts);
	uint32_t count = n;
	t0 = now();
	if (bpf_map_update_batch(fd, keys, vals, &count, &bopts))
		die("update_batch");
	r_bupd = now() - t0;

	uint64_t token = 0;
	uint32_t got = 0;
	int first = 1;
	t0 = now();
	for (;;) {
		count = chunk;
		if (got + count > n)
			count = n - got;
		if (count == 0)
			count = 1;
		int err = bpf_map_lookup_batch(fd, first ? NULL : &token, &token,
					       out_keys + (size_t)got * ks, out_vals + got,
					       &count, &bopts);
		got += count;
		first = 0;
		if (err) {
			if (errno == ENOENT)
				break;
			die("lookup_batch");
		}
		if (got >= n) {
			/* the walk ends with ENOENT; one more call to see it, like the Python side */
			continue;
		}
	}
	r_blook = now() - t0;
	if (got != n)
		die("lookup_batch count");

	count = n;
	t0 = now();
	if (bpf_map_delete_batch(fd, keys, &count, &bopts))
		die("delete_batch");
	r_bdel = now() - t0;
	close(fd);

	printf("{\"update\": %.1f, \"lookup\": %.1f, \"update_batch\": %.1f, "
	       "\"lookup_batch\": %.1f, \"delete_batch\": %.1f, \"check\": %llu}\n",
	       r_upd * 1e9 / n, r_look * 1e9 / n, r_bupd * 1e9 / n, r_blook * 1e9 / n,
	       r_bdel * 1e9 / n, (unsigned long long)sum);
	return 0;
}
