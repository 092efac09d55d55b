// SPDX-License-Identifier: GPL-2.0
/*
 * wakeprobe: a schbench-like wake-up probe (schbench is not packaged here).
 *
 *   wakeprobe SECONDS INTERVAL_US
 *
 * A waker thread sleeps INTERVAL_US, stamps CLOCK_MONOTONIC and wakes the probe
 * thread through a futex; the probe reads the clock as soon as it runs. The
 * difference is scheduler latency only: no timer sits between the stamp and the
 * wake-up, unlike cyclictest, whose figure also holds the timer's delivery.
 *
 * Prints "tid N" (the probe thread, for the bench to boost), waits for one line
 * on stdin, runs, then prints a cyclictest-style histogram (µs, non-zero rows).
 * The waker skips a beat while the probe has not consumed the last wake-up, so
 * samples never stack.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 100000	/* µs */

static _Atomic unsigned int seq, ack;
static _Atomic long long stamp;
static _Atomic int done;
static unsigned long hist[NBUCKETS], overflow, samples;
static long long max_us;

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *probe(void *arg)
{
	unsigned int seen = 0, s;
	long long us;

	(void)arg;
	printf("tid %ld\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	for (;;) {
		while ((s = atomic_load(&seq)) == seen)
			syscall(SYS_futex, &seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
		us = (now_ns() - atomic_load(&stamp)) / 1000;
		seen = s;
		if (atomic_load(&done))
			return NULL;
		atomic_store(&ack, s);
		samples++;
		if (us > max_us)
			max_us = us;
		if (us >= NBUCKETS)
			overflow++;
		else
			hist[us]++;
	}
}

int main(int argc, char **argv)
{
	struct timespec next;
	long long end, interval;
	pthread_t th;
	char line[16];
	long i;

	if (argc != 3) {
		fprintf(stderr, "usage: wakeprobe SECONDS INTERVAL_US\n");
		return 2;
	}
	interval = atoll(argv[2]) * 1000;
	if (pthread_create(&th, NULL, probe, NULL))
		return 1;
	if (!fgets(line, sizeof(line), stdin))	/* the bench has set the probe up */
		return 1;
	end = now_ns() + (long long)(atof(argv[1]) * 1e9);
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (now_ns() < end) {
		next.tv_nsec += interval;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		if (atomic_load(&ack) != atomic_load(&seq))
			continue;	/* the probe is still on its way: no stacked samples */
		atomic_store(&stamp, now_ns());
		atomic_fetch_add(&seq, 1);
		syscall(SYS_futex, &seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
	atomic_store(&done, 1);
	atomic_fetch_add(&seq, 1);
	syscall(SYS_futex, &seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_join(th, NULL);
	for (i = 0; i < NBUCKETS; i++)
		if (hist[i])
			printf("%06ld %06lu\n", i, hist[i]);
	printf("# Samples: %lu\n# Histogram Overflows: %lu\n# Max Latencies: %lld\n", samples, overflow, max_us);
	return 0;
}
