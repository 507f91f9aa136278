/* The C reference of pyxdp's AF_XDP benchmark (src/pyxdp/bench/afxdp_speed.py), written
 * with libxdp's xsk API: one copy-mode socket with need_wakeup on IFNAME queue 0, a UMEM of
 * 4096 frames of 4096 bytes, rings of 2048, batches of 64, busy polling -- the same shape as
 * pyxdp's side.  It loads no program: the bench attaches pyxdp's redirect program and passes
 * its XSKMAP as an inherited fd.
 *
 *   xsk_ref MODE IFNAME XSKMAP_FD [FRAME_LEN]     MODE: rxdrop | txonly | l2fwd
 *
 * Prints "ready" once bound and registered, runs until SIGINT/SIGTERM, then prints
 * "<frames> <seconds> <loop turns> <idle turns>" (frames received, sent or forwarded) and
 * exits.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>

#define NFRAMES 4096
#define FSIZE 4096
#define RING 2048
#define BATCH 64

static volatile sig_atomic_t running = 1;
static void stop(int sig) { (void)sig; running = 0; }

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void kick(struct xsk_socket *xsk)
{
	if (sendto(xsk_socket__fd(xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 &&
	    errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != ENETDOWN) {
		perror("sendto");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct xsk_ring_prod fq, tx;
	struct xsk_ring_cons cq, rx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	unsigned long long frames = 0, polls = 0, idle = 0, before = 0;
	unsigned int frame_len = argc > 4 ? atoi(argv[4]) : 60;
	__u32 idx;
	int mode, map_fd, ret;

	if (argc < 4) {
		fprintf(stderr, "usage: %s rxdrop|txonly|l2fwd IFNAME XSKMAP_FD [FRAME_LEN]\n",
			argv[0]);
		return 2;
	}
	mode = !strcmp(argv[1], "rxdrop") ? 0 : !strcmp(argv[1], "txonly") ? 1 :
	       !strcmp(argv[1], "l2fwd") ? 2 : -1;
	if (mode < 0) {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	map_fd = atoi(argv[3]);
	signal(SIGINT, stop);
	signal(SIGTERM, stop);

	void *area = mmap(NULL, (size_t)NFRAMES * FSIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (area == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	struct xsk_umem_config ucfg = { .fill_size = RING, .comp_size = RING,
					.frame_size = FSIZE, .frame_headroom = 0, .flags = 0 };
	ret = xsk_umem__create(&umem, area, (size_t)NFRAMES * FSIZE, &fq, &cq, &ucfg);
	if (ret) {
		fprintf(stderr, "xsk_umem__create: %s\n", strerror(-ret));
		return 1;
	}
	struct xsk_socket_config scfg = { .rx_size = RING, .tx_size = RING,
					  .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
					  .bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP };
	ret = xsk_socket__create(&xsk, argv[2], 0, umem, &rx, &tx, &scfg);
	if (ret) {
		fprintf(stderr, "xsk_socket__create: %s\n", strerror(-ret));
		return 1;
	}
	ret = xsk_socket__update_xskmap(xsk, map_fd);
	if (ret) {
		fprintf(stderr, "xsk_socket__update_xskmap: %s\n", strerror(-ret));
		return 1;
	}
	/* frames 0..RING-1 to the fill ring (rx modes); RING..NFRAMES-1 for txonly */
	if (mode != 1) {
		if (xsk_ring_prod__reserve(&fq, RING, &idx) != RING)
			return 1;
		for (__u32 i = 0; i < RING; i++)
			*xsk_ring_prod__fill_addr(&fq, idx + i) = (__u64)i * FSIZE;
		xsk_ring_prod__submit(&fq, RING);
	}
	__u64 next_tx = RING; /* txonly: fresh frames RING.. first, then completions */
	if (mode == 1) {
		unsigned char *f = area;
		for (__u32 i = RING; i < NFRAMES; i++) {
			memset(f + (size_t)i * FSIZE, 0, frame_len);
			memcpy(f + (size_t)i * FSIZE, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
			       "\x88\xb5", 14);
		}
	}
	printf("ready\n");
	fflush(stdout);
	double t0 = now();
	while (running) {
		if (polls && frames == before)
			idle++; /* the previous loop turn moved no frame */
		before = frames;
		polls++;
		__u32 n, idx_rx = 0, idx_fq = 0, idx_tx = 0, idx_cq = 0;

		if (mode == 1) { /* txonly */
			n = xsk_ring_cons__peek(&cq, BATCH, &idx_cq);
			__u32 fresh = (__u32)(NFRAMES - next_tx);
			__u32 want = n + fresh;
			if (want > BATCH)
				want = BATCH;
			__u32 got = xsk_ring_prod__reserve(&tx, want, &idx_tx);
			__u32 used_cq = 0;
			for (__u32 i = 0; i < got; i++) {
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&tx, idx_tx + i);
				if (next_tx < NFRAMES) {
					d->addr = next_tx++ * FSIZE;
				} else {
					d->addr = *xsk_ring_cons__comp_addr(&cq, idx_cq + used_cq++);
				}
				d->len = frame_len;
				d->options = 0;
			}
			xsk_ring_prod__submit(&tx, got);
			xsk_ring_cons__release(&cq, used_cq);
			frames += got;
			if (xsk_ring_prod__needs_wakeup(&tx))
				kick(xsk);
			continue;
		}
		if (mode == 2) { /* completions back to the fill ring */
			n = xsk_ring_cons__peek(&cq, RING, &idx_cq);
			if (n && xsk_ring_prod__reserve(&fq, n, &idx_fq) != n) {
				xsk_ring_cons__cancel(&cq, n);
			} else if (n) {
				for (__u32 i = 0; i < n; i++)
					*xsk_ring_prod__fill_addr(&fq, idx_fq + i) =
						*xsk_ring_cons__comp_addr(&cq, idx_cq + i);
				xsk_ring_prod__submit(&fq, n);
				xsk_ring_cons__release(&cq, n);
			}
		}
		n = xsk_ring_cons__peek(&rx, BATCH, &idx_rx);
		if (!n) {
			if (xsk_ring_prod__needs_wakeup(&fq))
				recvfrom(xsk_socket__fd(xsk), NULL, 0, MSG_DONTWAIT, NULL, NULL);
			if (mode == 2 && xsk_ring_prod__needs_wakeup(&tx))
				kick(xsk);
			continue;
		}
		if (mode == 0) {
			if (xsk_ring_prod__reserve(&fq, n, &idx_fq) != n) {
				xsk_ring_cons__cancel(&rx, n);
				continue;
			}
			for (__u32 i = 0; i < n; i++)
				*xsk_ring_prod__fill_addr(&fq, idx_fq + i) =
					xsk_ring_cons__rx_desc(&rx, idx_rx + i)->addr;
			xsk_ring_prod__submit(&fq, n);
		} else {
			if (xsk_ring_prod__reserve(&tx, n, &idx_tx) != n) {
				/* tx full: let the kernel drain it, reap completions, retry */
				xsk_ring_cons__cancel(&rx, n);
				kick(xsk);
				continue;
			}
			for (__u32 i = 0; i < n; i++)
				*xsk_ring_prod__tx_desc(&tx, idx_tx + i) =
					*xsk_ring_cons__rx_desc(&rx, idx_rx + i);
			xsk_ring_prod__submit(&tx, n);
			if (xsk_ring_prod__needs_wakeup(&tx))
				kick(xsk);
		}
		xsk_ring_cons__release(&rx, n);
		frames += n;
	}
	double t1 = now();
	printf("%llu %.6f %llu %llu\n", frames, t1 - t0, polls, idle);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	munmap(area, (size_t)NFRAMES * FSIZE);
	return 0;
}
