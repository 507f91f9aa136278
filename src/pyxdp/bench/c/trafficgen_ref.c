#define _GNU_SOURCE
// Reference traffic generator for pyxdp.bench.xdp_table (`pyxdp bench`): the smallest C
// program that drives XDP live frames through one long BPF_PROG_TEST_RUN call per thread
// (what xdp-trafficgen does at its core).
// Usage: trafficgen_ref IFINDEX COUNT THREADS HEXFRAME
// Prints "sent=N ns=T" (kernel-timed, per thread summed).
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int prog_fd, ifindex;
static unsigned long long count_per_thread;
static unsigned char frame[2048];
static size_t frame_len;

static void *worker(void *arg) {
    long cpu = (long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
    struct xdp_md ctx = {.data_end = frame_len, .ingress_ifindex = ifindex};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = frame_len,
                .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = count_per_thread,
                .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = 64);
    if (bpf_prog_test_run_opts(prog_fd, &opts)) {
        perror("bpf_prog_test_run_opts");
        exit(1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s IFINDEX COUNT THREADS HEXFRAME\n", argv[0]);
        return 2;
    }
    ifindex = atoi(argv[1]);
    unsigned long long count = strtoull(argv[2], NULL, 10);
    int threads = atoi(argv[3]);
    const char *hex = argv[4];
    frame_len = strlen(hex) / 2;
    for (size_t i = 0; i < frame_len; i++) sscanf(hex + 2 * i, "%2hhx", &frame[i]);
    struct bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = XDP_TX},
        {.code = BPF_JMP | BPF_EXIT},
    };
    LIBBPF_OPTS(bpf_prog_load_opts, lopts, .expected_attach_type = BPF_XDP);
    prog_fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "ref_gen", "GPL", insns, 2, &lopts);
    if (prog_fd < 0) {
        perror("bpf_prog_load");
        return 1;
    }
    count_per_thread = count / threads;
    pthread_t t[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    printf("sent=%llu ns=%lld\n", count_per_thread * threads, ns);
    return 0;
}
