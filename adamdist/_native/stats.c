/*
 * One-pass statistics of CPU tensors for adamdist.results.StatsAccumulator.
 *
 * For each "job" (one tensor) the kernel reads the values once and produces
 * what the torch route needs a dozen passes for: the number of finite and
 * non-finite entries, mean, variance, variance of |x|, skewness, the histogram
 * on the accumulator's edges (with numpy.histogram's edge rules, exactly), and
 * the values at the sampled coordinates. With ``b`` set, the values are the
 * update of a recorder, u = (a - b) / neg_lr, evaluated in the tensor's dtype
 * exactly as torch evaluates ``a.sub_(b).div_(neg_lr)``, so the update never
 * has to be written to memory.
 *
 * Accuracy: sums are double, about a per-tensor shift (the mean of a strided
 * subset), so no digits are lost to a large mean. Work is split in chunks
 * that OpenMP threads take dynamically; each chunk's partial sums and bin
 * counts are reduced in a fixed order, so results do not depend on timing.
 *
 * Built and loaded by adamdist/_native/__init__.py; plain C99, no Python or
 * torch headers.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 32768
#define BLOCK 256 /* values held in a stack buffer between the passes of a chunk */
/* uniform edges: positions this close to an integer are re-binned by comparison with the edges. The
 * caller guarantees the edges lie within 1e-9 of a bin of the uniform grid, and the position's own
 * rounding error is below 1e-12 for any realistic number of bins, so anything farther is exact. */
#define NEAR 1e-7
#define LANES 4 /* interleaved sub-histograms (count_bins): equal consecutive bins do not serialise on one counter */

typedef struct {
    const void *a;        /* values, or theta_{t-1} when b is set */
    const void *b;        /* theta_t, or NULL */
    double neg_lr;        /* u = (a - b) / neg_lr, the division done in the tensor's dtype */
    int64_t n;            /* entries */
    const int64_t *sample_idx;  /* flat indices of sampled entries */
    const int64_t *sample_col;  /* where each goes in sample_out (NULL: 0, 1, 2, ...) */
    int64_t n_sample;
    double *sample_out;   /* float64 row of sampled values (may be NULL when n_sample == 0) */
    int64_t *hist;        /* B + 2 counts (underflow, bins, overflow), overwritten */
    double *moments;      /* mean, var, abs_var, skew, overwritten */
    int64_t *counts;      /* finite, non-finite, overwritten */
    double *abs_sum;      /* sum of |x| over finite entries (NULL: not wanted) */
} job_t;

typedef struct {
    double shift, abs_shift;
} shift_t;

typedef struct {
    int64_t job, start, stop;
} chunk_t;

/* partial results of one chunk: finite count, sum d, d^2, d^3, sum a, a^2 (d = x - shift, a = |x| - abs_shift) */
#define NSUM 6

static inline double value_f32(const job_t *j, int64_t i) {
    const float *a = (const float *)j->a;
    if (!j->b) return (double)a[i];
    const float *b = (const float *)j->b;
    float d = a[i] - b[i];
    return (double)(d / (float)j->neg_lr);
}

static inline double value_f64(const job_t *j, int64_t i) {
    const double *a = (const double *)j->a;
    if (!j->b) return a[i];
    const double *b = (const double *)j->b;
    return (a[i] - b[i]) / j->neg_lr;
}

static inline double value_at(const job_t *j, int64_t i, int is_double) {
    return is_double ? value_f64(j, i) : value_f32(j, i);
}

/* bin of a finite x by bisection: 0 below edges[0], k for edges[k-1] <= x < edges[k], nb + 1 above
 * edges[nb]; x == edges[nb] belongs to the last bin (numpy.histogram's rule) */
static inline int64_t bin_of(double x, const double *edges, int64_t nb) {
    int64_t lo = 0, hi = nb + 1; /* number of edges <= x */
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (edges[mid] <= x) lo = mid + 1; else hi = mid;
    }
    if (lo == nb + 1 && x == edges[nb]) lo = nb;
    return lo;
}

/* add the bins kb[0..m) to the four interleaved sub-histograms */
static inline void count_bins(const int32_t *restrict kb, int64_t m, int32_t *restrict lanes, int64_t width) {
    int32_t *restrict l0 = lanes, *restrict l1 = lanes + width, *restrict l2 = lanes + 2 * width,
            *restrict l3 = lanes + 3 * width;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
        l0[kb[i]]++; l1[kb[i + 1]]++; l2[kb[i + 2]]++; l3[kb[i + 3]]++;
    }
    for (; i < m; i++) l0[kb[i]]++;
}

/* values [i0, i0 + m) of a job, as doubles */
static void load_block(const job_t *j, int is_double, int64_t i0, int64_t m, double *restrict xb) {
    if (is_double) {
        const double *restrict a = (const double *)j->a + i0;
        if (j->b) {
            const double *restrict b = (const double *)j->b + i0;
            const double lr = j->neg_lr;
            #pragma omp simd
            for (int64_t i = 0; i < m; i++) xb[i] = (a[i] - b[i]) / lr;
        } else {
            #pragma omp simd
            for (int64_t i = 0; i < m; i++) xb[i] = a[i];
        }
    } else {
        const float *restrict a = (const float *)j->a + i0;
        if (j->b) {
            const float *restrict b = (const float *)j->b + i0;
            const float lr = (float)j->neg_lr;
            #pragma omp simd
            for (int64_t i = 0; i < m; i++) xb[i] = (double)((a[i] - b[i]) / lr);
        } else {
            #pragma omp simd
            for (int64_t i = 0; i < m; i++) xb[i] = (double)a[i];
        }
    }
}

static void chunk_stats(const job_t *j, int is_double, int64_t start, int64_t stop, shift_t s,
                        const double *edges, int64_t nb, int uniform, double e0, double inv_w,
                        double *sums, int64_t *nonfinite, int64_t *hist, int32_t *lanes) {
    const int64_t width = nb + 2;
    memset(lanes, 0, sizeof(int32_t) * LANES * width);
    double xb[BLOCK];
    int32_t kb[BLOCK];
    double cnt = 0, s1 = 0, s2 = 0, s3 = 0, a1 = 0, a2 = 0;
    int64_t bad = 0;
    const double shift = s.shift, ashift = s.abs_shift;
    for (int64_t i0 = start; i0 < stop; i0 += BLOCK) {
        int64_t m = stop - i0 < BLOCK ? stop - i0 : BLOCK;
        load_block(j, is_double, i0, m, xb);
        int64_t nf = 0;
        #pragma omp simd reduction(+:nf)
        for (int64_t i = 0; i < m; i++) nf += (xb[i] - xb[i]) != 0.0;  /* x - x is NaN for NaN and +-inf */
        if (nf) {  /* rare: keep the finite values, in order */
            int64_t w = 0;
            for (int64_t i = 0; i < m; i++)
                if (isfinite(xb[i])) xb[w++] = xb[i];
            bad += m - w;
            m = w;
        }
        /* omp simd reduction: vector accumulators, i.e. a fixed, data-independent summation order */
        #pragma omp simd reduction(+:s1, s2, s3, a1, a2)
        for (int64_t i = 0; i < m; i++) {
            double d = xb[i] - shift, d2 = d * d;
            double a = fabs(xb[i]) - ashift;
            s1 += d; s2 += d2; s3 += d2 * d; a1 += a; a2 += a * a;
        }
        cnt += (double)m;
        if (uniform) {
            /* affine guess, clamped to [0, nb + 1] before the conversion; a value whose position lies
             * within NEAR of an integer may sit on (or within rounding of) an edge and is settled below */
            int64_t near = 0;
            #pragma omp simd reduction(+:near)
            for (int64_t i = 0; i < m; i++) {
                double pos = (xb[i] - e0) * inv_w + 1.0;
                pos = pos < 0.5 ? 0.5 : pos;
                pos = pos > (double)nb + 1.5 ? (double)nb + 1.5 : pos;
                int32_t k = (int32_t)pos;
                double f = pos - (double)k;
                kb[i] = k;
                near += (f < NEAR) | (f > 1.0 - NEAR);
            }
            if (near) {
                for (int64_t i = 0; i < m; i++) {  /* exact comparisons with the edges themselves */
                    double x = xb[i];
                    int64_t k = kb[i];
                    while (k > 0 && x < edges[k - 1]) k--;
                    while (k <= nb && x >= edges[k]) k++;
                    if (k == nb + 1 && x == edges[nb]) k = nb;
                    kb[i] = (int32_t)k;
                }
            }
            count_bins(kb, m, lanes, width);
        } else {
            for (int64_t i = 0; i < m; i++) kb[i] = (int32_t)bin_of(xb[i], edges, nb);
            count_bins(kb, m, lanes, width);
        }
    }
    sums[0] = cnt; sums[1] = s1; sums[2] = s2; sums[3] = s3; sums[4] = a1; sums[5] = a2;
    *nonfinite = bad;
    for (int64_t k = 0; k < width; k++) {
        int64_t c = 0;
        for (int l = 0; l < LANES; l++) c += lanes[l * width + k];
        hist[k] = c;
    }
}

static shift_t choose_shift(const job_t *j, int is_double) {
    /* mean of (about) 1024 evenly spaced finite entries: close enough to the mean that the
     * shifted power sums do not cancel, cheap enough to be negligible */
    shift_t s = {0.0, 0.0};
    int64_t step = j->n / 1024;
    if (step < 1) step = 1;
    double sx = 0, sa = 0, c = 0;
    for (int64_t i = 0; i < j->n; i += step) {
        double x = value_at(j, i, is_double);
        if (isfinite(x)) { sx += x; sa += fabs(x); c += 1; }
    }
    if (c > 0 && isfinite(sx) && isfinite(sa)) { s.shift = sx / c; s.abs_shift = sa / c; }
    return s;
}

static void finish(const job_t *j, shift_t s, const double *t, int64_t nonfinite) {
    double n = t[0];
    j->counts[0] = (int64_t)n;
    j->counts[1] = nonfinite;
    if (j->abs_sum) *j->abs_sum = n > 0 ? n * s.abs_shift + t[4] : 0.0;
    if (n == 0) {
        for (int k = 0; k < 4; k++) j->moments[k] = NAN;  /* no data: NaN, as the torch route gives */
        return;
    }
    double m1 = t[1] / n, m2 = t[2] / n, m3 = t[3] / n, am1 = t[4] / n, am2 = t[5] / n;
    double var = m2 - m1 * m1;
    double abs_var = am2 - am1 * am1;
    if (var < 0) var = 0;        /* rounding only: a variance is never negative */
    if (abs_var < 0) abs_var = 0;
    double c3 = m3 - 3 * m1 * m2 + 2 * m1 * m1 * m1;
    j->moments[0] = s.shift + m1;
    j->moments[1] = var;
    j->moments[2] = abs_var;
    j->moments[3] = var > 0 ? c3 / pow(var, 1.5) : NAN;  /* constant values: skewness undefined */
}

/*
 * Statistics of n_jobs tensors. dtype: 0 = float32, 1 = float64. edges: nb + 1 increasing
 * doubles; uniform != 0 when they are evenly spaced (then e0 = edges[0], inv_w = 1 / spacing).
 * threads: OpenMP threads to use (<= 0: the runtime's default). Returns 0, or -1 when out of memory.
 */
int adamdist_stats(const job_t *jobs, int64_t n_jobs, int dtype, const double *edges, int64_t nb, int uniform,
                   double e0, double inv_w, int threads) {
    const int is_double = dtype == 1;
    const int64_t width = nb + 2;
    int64_t n_chunks = 0;
    for (int64_t q = 0; q < n_jobs; q++) n_chunks += jobs[q].n > 0 ? (jobs[q].n + CHUNK - 1) / CHUNK : 0;
    chunk_t *chunks = malloc(sizeof(chunk_t) * (n_chunks ? n_chunks : 1));
    shift_t *shifts = malloc(sizeof(shift_t) * (n_jobs ? n_jobs : 1));
    double *sums = malloc(sizeof(double) * NSUM * (n_chunks ? n_chunks : 1));
    int64_t *bad = malloc(sizeof(int64_t) * (n_chunks ? n_chunks : 1));
    int64_t *hists = malloc(sizeof(int64_t) * width * (n_chunks ? n_chunks : 1));
    if (!chunks || !shifts || !sums || !bad || !hists) {
        free(chunks); free(shifts); free(sums); free(bad); free(hists);
        return -1;
    }
    int64_t c = 0;
    for (int64_t q = 0; q < n_jobs; q++) {
        shifts[q] = choose_shift(&jobs[q], is_double);
        for (int64_t s = 0; s < jobs[q].n; s += CHUNK) {
            chunks[c].job = q;
            chunks[c].start = s;
            chunks[c].stop = s + CHUNK < jobs[q].n ? s + CHUNK : jobs[q].n;
            c++;
        }
    }
    if (threads <= 0) threads = 1;
    if (threads > n_chunks) threads = n_chunks > 0 ? (int)n_chunks : 1;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        int32_t *lanes = malloc(sizeof(int32_t) * LANES * width);
        if (!lanes) {
            #pragma omp atomic write
            failed = 1;
        } else {
            #pragma omp for schedule(dynamic, 1)
            for (int64_t k = 0; k < n_chunks; k++) {
                const chunk_t *ch = &chunks[k];
                chunk_stats(&jobs[ch->job], is_double, ch->start, ch->stop, shifts[ch->job], edges, nb, uniform,
                            e0, inv_w, &sums[k * NSUM], &bad[k], &hists[k * width], lanes);
            }
            free(lanes);
        }
    }
    if (!failed) {
        /* reduce chunk results job by job, in chunk order: the same answer whatever the thread timing */
        int64_t k = 0;
        for (int64_t q = 0; q < n_jobs; q++) {
            const job_t *j = &jobs[q];
            double total[NSUM] = {0};
            int64_t nonfinite = 0;
            for (int64_t b = 0; b < width; b++) j->hist[b] = 0;
            for (; k < n_chunks && chunks[k].job == q; k++) {
                for (int s = 0; s < NSUM; s++) total[s] += sums[k * NSUM + s];
                nonfinite += bad[k];
                for (int64_t b = 0; b < width; b++) j->hist[b] += hists[k * width + b];
            }
            finish(j, shifts[q], total, nonfinite);
            for (int64_t s = 0; s < j->n_sample; s++) {
                int64_t col = j->sample_col ? j->sample_col[s] : s;
                j->sample_out[col] = value_at(j, j->sample_idx[s], is_double);
            }
        }
    }
    free(chunks); free(shifts); free(sums); free(bad); free(hists);
    return failed ? -1 : 0;
}
