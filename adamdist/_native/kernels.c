/*
 * Compiled CPU kernels of adamdist: statistics (adamdist_stats) and optimizer
 * recursions (adamdist_step), each one pass over memory.
 *
 * adamdist_stats, for adamdist.results.StatsAccumulator:
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
 * Accuracy: each chunk sums powers in double about its own shift (the mean
 * of its first block), so no digits are lost to a large mean; chunks are then
 * merged as central moments with the pairwise formulas of Chan, Golub &
 * LeVeque (1979). Work is split in chunks that OpenMP threads take
 * dynamically; chunk results are merged in a fixed order, so results do not
 * depend on thread timing.
 *
 * adamdist_step, for adamdist.simulate.run: one step of Adam, LaProp, RMSprop,
 * Adagrad or the simple average on n coordinates, writing the state and
 * u_t. The operations follow the torch code in adamdist/simulate.py one for
 * one (same order, same float rounding of every scalar, and the fused
 * multiply-adds that ATen's vectorised lerp and addcmul use), so the two
 * routes agree to float rounding; they are not bit-identical, because
 * torch's vectorised CPU sqrt is not correctly rounded and sqrt here is.
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
#define LANES 8 /* interleaved sub-histograms (count_bins): equal consecutive bins do not serialise on one counter */

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

/* count, mean and central moment sums M2 = sum (x - mean)^2, M3 = sum (x - mean)^3 of x, and the
 * mean and M2 of |x|: what two parts need to be merged without loss */
typedef struct {
    double n, mean, m2, m3, amean, am2;
} moments_t;

typedef struct {
    int64_t job, start, stop;
} chunk_t;


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

/* add the bins kb[0..m) to the LANES interleaved sub-histograms */
static inline void count_bins(const int32_t *restrict kb, int64_t m, int32_t *restrict lanes, int64_t width) {
    int32_t *restrict l0 = lanes, *restrict l1 = lanes + width, *restrict l2 = lanes + 2 * width,
            *restrict l3 = lanes + 3 * width, *restrict l4 = lanes + 4 * width, *restrict l5 = lanes + 5 * width,
            *restrict l6 = lanes + 6 * width, *restrict l7 = lanes + 7 * width;
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {
        l0[kb[i]]++; l1[kb[i + 1]]++; l2[kb[i + 2]]++; l3[kb[i + 3]]++;
        l4[kb[i + 4]]++; l5[kb[i + 5]]++; l6[kb[i + 6]]++; l7[kb[i + 7]]++;
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

static void chunk_stats(const job_t *j, int is_double, int64_t start, int64_t stop,
                        const double *edges, int64_t nb, int uniform, double e0, double inv_w,
                        moments_t *out, int64_t *nonfinite, int64_t *hist, int32_t *lanes) {
    const int64_t width = nb + 2;
    memset(lanes, 0, sizeof(int32_t) * LANES * width);
    double xb[BLOCK];
    int32_t kb[BLOCK];
    double cnt = 0, s1 = 0, s2 = 0, s3 = 0, a1 = 0, a2 = 0;
    int64_t bad = 0;
    double shift = 0, ashift = 0;
    int shifted = 0;
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
        if (!shifted && m > 0) {  /* the shift: mean of the chunk's first finite values */
            double sx = 0, sa = 0;
            for (int64_t i = 0; i < m; i++) { sx += xb[i]; sa += fabs(xb[i]); }
            if (isfinite(sx) && isfinite(sa)) { shift = sx / (double)m; ashift = sa / (double)m; }
            shifted = 1;
        }
        /* one vector loop: power sums (omp simd reduction: vector accumulators, i.e. a fixed summation
         * order) and, for uniform edges, the affine guess of every bin, clamped to [0, nb + 1] before the
         * conversion; a value whose position lies within NEAR of an integer may sit on (or within rounding
         * of) an edge and is settled below */
        int64_t near = 0;
        const double top = (double)nb + 1.5;
        #pragma omp simd reduction(+:s1, s2, s3, a1, a2, near)
        for (int64_t i = 0; i < m; i++) {
            double x = xb[i];
            double d = x - shift, d2 = d * d;
            double a = fabs(x) - ashift;
            s1 += d; s2 += d2; s3 += d2 * d; a1 += a; a2 += a * a;
            double pos = (x - e0) * inv_w + 1.0;
            pos = pos < 0.5 ? 0.5 : pos;
            pos = pos > top ? top : pos;
            int32_t k = (int32_t)pos;
            double f = pos - (double)k;
            kb[i] = k;
            near += (f < NEAR) | (f > 1.0 - NEAR);
        }
        cnt += (double)m;
        if (uniform) {
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
    /* shifted power sums -> central moments of the chunk */
    out->n = cnt;
    if (cnt > 0) {
        double d = s1 / cnt, ad = a1 / cnt;
        out->mean = shift + d;
        out->m2 = s2 - s1 * d;
        out->m3 = s3 - 3.0 * d * s2 + 2.0 * cnt * d * d * d;
        out->amean = ashift + ad;
        out->am2 = a2 - a1 * ad;
    } else {
        out->mean = out->m2 = out->m3 = out->amean = out->am2 = 0;
    }
    *nonfinite = bad;
    for (int64_t k = 0; k < width; k++) {
        int64_t c = 0;
        for (int l = 0; l < LANES; l++) c += lanes[l * width + k];
        hist[k] = c;
    }
}

/* a <- a merged with b (Chan, Golub & LeVeque 1979) */
static void merge(moments_t *a, const moments_t *b) {
    if (b->n == 0) return;
    if (a->n == 0) { *a = *b; return; }
    double n = a->n + b->n, d = b->mean - a->mean, da = b->amean - a->amean;
    double nab = a->n * b->n / n;
    a->m3 += b->m3 + d * d * d * nab * (a->n - b->n) / n + 3.0 * d * (a->n * b->m2 - b->n * a->m2) / n;
    a->m2 += b->m2 + d * d * nab;
    a->mean += d * b->n / n;
    a->am2 += b->am2 + da * da * nab;
    a->amean += da * b->n / n;
    a->n = n;
}

static void finish(const job_t *j, const moments_t *t, int64_t nonfinite) {
    double n = t->n;
    j->counts[0] = (int64_t)n;
    j->counts[1] = nonfinite;
    if (j->abs_sum) *j->abs_sum = n > 0 ? n * t->amean : 0.0;
    if (n == 0) {
        for (int k = 0; k < 4; k++) j->moments[k] = NAN;  /* no data: NaN, as the torch route gives */
        return;
    }
    double var = t->m2 / n, abs_var = t->am2 / n;
    if (var < 0) var = 0;  /* rounding only: a variance is never negative */
    if (abs_var < 0) abs_var = 0;
    j->moments[0] = t->mean;
    j->moments[1] = var;
    j->moments[2] = abs_var;
    j->moments[3] = var > 0 ? t->m3 / n / pow(var, 1.5) : NAN;  /* constant values: skewness undefined */
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
    int64_t size = n_chunks ? n_chunks : 1;
    chunk_t *chunks = malloc(sizeof(chunk_t) * size);
    moments_t *mom = malloc(sizeof(moments_t) * size);
    int64_t *bad = malloc(sizeof(int64_t) * size);
    int64_t *hists = malloc(sizeof(int64_t) * width * size);
    if (!chunks || !mom || !bad || !hists) {
        free(chunks); free(mom); free(bad); free(hists);
        return -1;
    }
    int64_t c = 0;
    for (int64_t q = 0; q < n_jobs; q++) {
        for (int64_t s = 0; s < jobs[q].n; s += CHUNK) {
            chunks[c].job = q;
            chunks[c].start = s;
            chunks[c].stop = s + CHUNK < jobs[q].n ? s + CHUNK : jobs[q].n;
            c++;
        }
    }
    if (threads <= 0) threads = 1;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        int32_t *lanes = malloc(sizeof(int32_t) * LANES * width);
        if (!lanes) {
            #pragma omp atomic write
            failed = 1;
        }
        /* every thread meets the worksharing loop, as OpenMP requires, even one without scratch */
        #pragma omp for schedule(dynamic, 1) nowait
        for (int64_t k = 0; k < n_chunks; k++) {
            const chunk_t *ch = &chunks[k];
            if (lanes)
                chunk_stats(&jobs[ch->job], is_double, ch->start, ch->stop, edges, nb, uniform, e0, inv_w,
                            &mom[k], &bad[k], &hists[k * width], lanes);
        }
        free(lanes);
        /* sampled values: scattered reads, so spread the tensors over the threads too */
        #pragma omp for schedule(dynamic, 1)
        for (int64_t q = 0; q < n_jobs; q++) {
            const job_t *j = &jobs[q];
            for (int64_t s = 0; s < j->n_sample; s++) {
                int64_t col = j->sample_col ? j->sample_col[s] : s;
                load_block(j, is_double, j->sample_idx[s], 1, &j->sample_out[col]);  /* the same formula */
            }
        }
    }
    if (!failed) {
        /* merge chunk results job by job, in chunk order: the same answer whatever the thread timing */
        int64_t k = 0;
        for (int64_t q = 0; q < n_jobs; q++) {
            const job_t *j = &jobs[q];
            moments_t total = {0, 0, 0, 0, 0, 0};
            int64_t nonfinite = 0;
            for (int64_t b = 0; b < width; b++) j->hist[b] = 0;
            for (; k < n_chunks && chunks[k].job == q; k++) {
                merge(&total, &mom[k]);
                nonfinite += bad[k];
                for (int64_t b = 0; b < width; b++) j->hist[b] += hists[k * width + b];
            }
            finish(j, &total, nonfinite);
        }
    }
    free(chunks); free(mom); free(bad); free(hists);
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------------------
 * optimizer steps
 *
 * hp: beta1, beta2, eps, t (the step, from 1). Codes: 0 adam, 1 laprop, 2 rmsprop, 3 adagrad, 4 average,
 * 5 fairseq_adam.
 * Scalars are rounded to the tensor's type exactly where torch rounds them (a Python float meeting a
 * float32 tensor becomes a float32), so expressions like 1 - b2 are formed in double first.
 * ------------------------------------------------------------------------------------------------------- */
#define STEP_CHUNK 16384

#define DEFINE_STEP(T, SQRT, FMA_T, FABS)                                                                        \
static void step_##T(int code, T *restrict m, T *restrict v, const T *restrict g, T *restrict u, int64_t lo,    \
                     int64_t hi, const double *hp) {                                                            \
    const double b1 = hp[0], b2 = hp[1], eps = hp[2], t = hp[3];                                                \
    const T w = (T)(1 - b1), fb1 = (T)b1, fb2 = (T)b2, omb2 = (T)(1 - b2), feps = (T)eps;                       \
    const T bc2s = (T)sqrt(1 - pow(b2, t)), sqrt_t = (T)sqrt(t), mstep = (T)(-1 / (1 - pow(b1, t)));           \
    const T fstep = (T)(-(sqrt(1 - pow(b2, t)) / (1 - pow(b1, t))));                                            \
    const T omb1 = (T)(1 - b1);                                                                                 \
    const int small = FABS(w) < (T)0.5;                                                                         \
    switch (code) {                                                                                             \
    case 0: /* adam: m.lerp_(g, 1 - b1); v.mul_(b2).addcmul_(g, g, 1 - b2); u = (m * -1/bc1) / denom */        \
        _Pragma("omp simd")                                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                                     \
            T gi = g[i], mi = m[i];                                                                             \
            mi = small ? FMA_T(w, gi - mi, mi) : FMA_T(w - (T)1, gi - mi, gi);                                   \
            T vi = FMA_T(omb2 * gi, gi, v[i] * fb2);                                                            \
            T denom = SQRT(vi) / bc2s + feps;                                                                   \
            m[i] = mi; v[i] = vi;                                                                               \
            u[i] = (mi * mstep) / denom;                                                                        \
        }                                                                                                       \
        break;                                                                                                  \
    case 1: /* laprop (paper eqs. 2-4): m = b1 m + (1 - b1) g / denom; u = m * -1/bc1 */                        \
        _Pragma("omp simd")                                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                                     \
            T gi = g[i];                                                                                        \
            T vi = FMA_T(omb2 * gi, gi, v[i] * fb2);                                                            \
            T denom = SQRT(vi) / bc2s + feps;                                                                   \
            T mi = m[i] * fb1 + (omb1 * gi) / denom;                                                            \
            m[i] = mi; v[i] = vi;                                                                               \
            u[i] = mi * mstep;                                                                                  \
        }                                                                                                       \
        break;                                                                                                  \
    case 2: /* rmsprop: v.mul_(b2).addcmul_(g, g, 1 - b2); denom = sqrt(v) + eps; momentum b1 */              \
        _Pragma("omp simd")                                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                                     \
            T gi = g[i];                                                                                        \
            T vi = FMA_T(omb2 * gi, gi, v[i] * fb2);                                                            \
            T denom = SQRT(vi) + feps;                                                                          \
            v[i] = vi;                                                                                          \
            if (b1 > 0) {                                                                                       \
                T mi = m[i] * fb1 + gi / denom;                                                                 \
                m[i] = mi;                                                                                      \
                u[i] = -mi;                                                                                     \
            } else {                                                                                            \
                u[i] = -(gi / denom);                                                                           \
            }                                                                                                   \
        }                                                                                                       \
        break;                                                                                                  \
    case 3: /* adagrad: v.addcmul_(g, g); u = -(g / (sqrt(v) + eps)) */                                        \
        _Pragma("omp simd")                                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                                     \
            T gi = g[i];                                                                                        \
            T vi = FMA_T(gi, gi, v[i]);                                                                         \
            v[i] = vi;                                                                                          \
            u[i] = -(gi / (SQRT(vi) + feps));                                                                   \
        }                                                                                                       \
        break;                                                                                                  \
    case 4: /* average: v = running sum of g^2; denom = sqrt(v) / sqrt(t) + eps */                             \
        _Pragma("omp simd")                                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                                     \
            T gi = g[i];                                                                                        \
            T vi = FMA_T(gi, gi, v[i]);                                                                         \
            T denom = SQRT(vi) / sqrt_t + feps;                                                                 \
            v[i] = vi;                                                                                          \
            if (b1 > 0) {                                                                                       \
                T mi = m[i];                                                                                    \
                mi = small ? FMA_T(w, gi - mi, mi) : FMA_T(w - (T)1, gi - mi, gi);                               \
                m[i] = mi;                                                                                      \
                u[i] = (mi / denom) * mstep;                                                                    \
            } else {                                                                                            \
                u[i] = -(gi / denom);                                                                           \
            }                                                                                                   \
        }                                                                                                       \
        break;                                                                                                  \
    case 5: /* fairseq_adam: m.mul_(b1).add_(g, 1 - b1); v as adam; u = (m * -sqrt(bc2)/bc1) / (sqrt(v) + eps) */ \
        _Pragma("omp simd")                                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                                     \
            T gi = g[i];                                                                                        \
            T mi = FMA_T(gi, omb1, m[i] * fb1);                                                                 \
            T vi = FMA_T(omb2 * gi, gi, v[i] * fb2);                                                            \
            m[i] = mi; v[i] = vi;                                                                               \
            u[i] = (mi * fstep) / (SQRT(vi) + feps);                                                            \
        }                                                                                                       \
        break;                                                                                                  \
    }                                                                                                           \
}

typedef float f32;
typedef double f64;
DEFINE_STEP(f32, sqrtf, fmaf, fabsf)
DEFINE_STEP(f64, sqrt, fma, fabs)

/*
 * One optimizer step on n coordinates: state m, v (m unused by adagrad and may then be NULL), gradient g,
 * update u (written). dtype 0 = float32, 1 = float64. Returns 0, or -1 for an unknown optimizer code.
 */
int adamdist_step(int code, int dtype, void *m, void *v, const void *g, void *u, int64_t n, const double *hp,
                  int threads) {
    if (code < 0 || code > 5) return -1;
    if (threads <= 0) threads = 1;
    int64_t n_chunks = (n + STEP_CHUNK - 1) / STEP_CHUNK;
    #pragma omp parallel for num_threads(threads) schedule(static) if (n_chunks > 1)
    for (int64_t k = 0; k < n_chunks; k++) {
        int64_t lo = k * STEP_CHUNK, hi = lo + STEP_CHUNK < n ? lo + STEP_CHUNK : n;
        if (dtype == 1)
            step_f64(code, (f64 *)m, (f64 *)v, (const f64 *)g, (f64 *)u, lo, hi, hp);
        else
            step_f32(code, (f32 *)m, (f32 *)v, (const f32 *)g, (f32 *)u, lo, hi, hp);
    }
    return 0;
}
