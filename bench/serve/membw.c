/* membw.c - the machine's memory bandwidth with N threads: the physical limit of decoding
 * (every generated token reads all the weights once). Prints one JSON line per buffer size;
 * bench/serve/run divides the bytes of weights a generated token reads by these figures.
 *
 *     membw [--threads N] [--reps K] MIB...
 *
 * For each size: two buffers of MIB MiB, touched first by the threads that use them (so
 * their pages are faulted in, and on the right node where there are several); then the best
 * of K passes of
 *   - copy: each thread memcpy()s its share of src to dst; counted as STREAM counts a copy,
 *     bytes read + bytes written (glibc's memcpy streams large copies with non-temporal
 *     stores, so no extra read of dst happens);
 *   - read: each thread sums its share of src with 16-byte vector loads (four
 *     accumulators); bytes read.
 * Threads are OpenMP's (omp_set_num_threads), as forja's engine uses.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef float v4f __attribute__((vector_size(16)));

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void share(size_t n, size_t *lo, size_t *hi)
{
    int id = omp_get_thread_num(), nt = omp_get_num_threads();
    size_t per = (n / (size_t)nt) & ~(size_t)63; /* whole cache lines of floats */
    *lo = per * (size_t)id;
    *hi = id == nt - 1 ? n : *lo + per;
}

static float read_pass(const float *a, size_t n)
{
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
        size_t lo, hi;
        share(n, &lo, &hi);
        v4f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        size_t i = lo;
        for (; i + 16 <= hi; i += 16) {
            v4f x0, x1, x2, x3;
            memcpy(&x0, a + i, 16);
            memcpy(&x1, a + i + 4, 16);
            memcpy(&x2, a + i + 8, 16);
            memcpy(&x3, a + i + 12, 16);
            s0 += x0, s1 += x1, s2 += x2, s3 += x3;
        }
        v4f s = (s0 + s1) + (s2 + s3);
        float t = s[0] + s[1] + s[2] + s[3];
        for (; i < hi; i++)
            t += a[i];
        total += t;
    }
    return total;
}

static void copy_pass(float *dst, const float *src, size_t n)
{
#pragma omp parallel
    {
        size_t lo, hi;
        share(n, &lo, &hi);
        memcpy(dst + lo, src + lo, (hi - lo) * sizeof *src);
    }
}

int main(int argc, char **argv)
{
    int threads = omp_get_num_procs(), reps = 5, first = 1;
    while (first + 1 < argc && argv[first][0] == '-') {
        if (!strcmp(argv[first], "--threads"))
            threads = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--reps"))
            reps = atoi(argv[first + 1]);
        else {
            fprintf(stderr, "membw: unknown option %s\n", argv[first]);
            return 2;
        }
        first += 2;
    }
    if (first >= argc || threads < 1 || reps < 1) {
        fprintf(stderr, "usage: membw [--threads N] [--reps K] MIB...\n");
        return 2;
    }
    omp_set_num_threads(threads);
    for (int k = first; k < argc; k++) {
        long mib = atol(argv[k]);
        if (mib < 1) {
            fprintf(stderr, "membw: bad size %s\n", argv[k]);
            return 2;
        }
        size_t n = (size_t)mib << 18; /* floats */
        float *src = aligned_alloc(64, n * sizeof *src), *dst = aligned_alloc(64, n * sizeof *dst);
        if (!src || !dst) {
            fprintf(stderr, "membw: out of memory for %ld MiB\n", mib);
            return 3;
        }
#pragma omp parallel
        {
            size_t lo, hi;
            share(n, &lo, &hi);
            for (size_t i = lo; i < hi; i++)
                src[i] = (float)(i & 1023) * (1.0f / 1024), dst[i] = 0;
        }
        /* small sets pass quickly: more passes, for a steadier best */
        int r = reps * (mib < 256 ? (int)(256 / mib) : 1);
        if (r > 200)
            r = 200;
        double best_copy = 1e30, best_read = 1e30, sum = 0;
        for (int i = 0; i <= r; i++) { /* pass 0 warms up */
            double t = now();
            copy_pass(dst, src, n);
            double tc = now() - t;
            t = now();
            sum += read_pass(i & 1 ? dst : src, n);
            double tr = now() - t;
            if (i > 0 && tc < best_copy)
                best_copy = tc;
            if (i > 0 && tr < best_read)
                best_read = tr;
        }
        double bytes = (double)n * sizeof *src;
        printf("{\"impl\":\"membw\",\"threads\":%d,\"mib\":%ld,\"passes\":%d,"
               "\"copy_gb_s\":%.3f,\"read_gb_s\":%.3f,\"checksum\":%.6g}\n",
               threads, mib, r, 2 * bytes / best_copy / 1e9, bytes / best_read / 1e9, sum);
        fflush(stdout);
        free(src);
        free(dst);
    }
    return 0;
}
