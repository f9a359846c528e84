// CUDA kernels of the fused ops (see mod.rs), compiled at run time with NVRTC:
// no headers, so half types are carried as their bits and converted here.
// Arithmetic is f32 for every storage type.

#define NEG_INF __uint_as_float(0xff800000u)

struct f16_t { unsigned short bits; };
struct bf16_t { unsigned short bits; };

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16_t x) { return __uint_as_float(((unsigned int)x.bits) << 16); }
__device__ __forceinline__ float to_f(f16_t x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(bf16_t* p, float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { p->bits = 0x7fc0; return; }  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                    // round to nearest even
    p->bits = (unsigned short)(u >> 16);
}
__device__ __forceinline__ void store(f16_t* p, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p->bits = h;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    __syncthreads();  // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
        w = warp_sum(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
}

// ---- GroupNorm / LayerNorm (+ SiLU) -------------------------------------
// One block per row of `len` elements; element e of row r has channel
// (r % groups) * (len / inner) + e / inner.

template <typename T>
__device__ void row_statistics(const T* x, int len, float eps, float* mean, float* inverse_std) {
    float s = 0.0f;
    for (int e = threadIdx.x; e < len; e += blockDim.x) s += to_f(x[e]);
    float m = block_sum(s) / len;
    float q = 0.0f;
    for (int e = threadIdx.x; e < len; e += blockDim.x) { float d = to_f(x[e]) - m; q += d * d; }
    *mean = m;
    *inverse_std = rsqrtf(block_sum(q) / len + eps);
}

template <typename T>
__device__ void norm_forward(const T* x, const T* weight, const T* bias, T* y, int len, int inner, int groups,
                             float eps, int silu) {
    long long row = blockIdx.x;
    x += row * len; y += row * len;
    int first = (int)(row % groups) * (len / inner);
    float mean, inverse_std;
    row_statistics(x, len, eps, &mean, &inverse_std);
    for (int e = threadIdx.x; e < len; e += blockDim.x) {
        int c = first + e / inner;
        float z = (to_f(x[e]) - mean) * inverse_std * to_f(weight[c]) + to_f(bias[c]);
        if (silu) z = z / (1.0f + __expf(-z));
        store(&y[e], z);
    }
}

// dx = (d − mean(d) − x̂·mean(d·x̂))/σ with d = dy·(SiLU′)·w.
template <typename T>
__device__ void norm_backward(const T* x, const T* dy, const T* weight, const T* bias, T* dx, int len, int inner,
                              int groups, float eps, int silu) {
    long long row = blockIdx.x;
    x += row * len; dy += row * len; dx += row * len;
    int first = (int)(row % groups) * (len / inner);
    float mean, inverse_std;
    row_statistics(x, len, eps, &mean, &inverse_std);
    float sum_d = 0.0f, sum_d_xhat = 0.0f;
    for (int e = threadIdx.x; e < len; e += blockDim.x) {
        int c = first + e / inner;
        float xhat = (to_f(x[e]) - mean) * inverse_std, w = to_f(weight[c]);
        float g = to_f(dy[e]);
        if (silu) {
            float z = xhat * w + to_f(bias[c]);
            float s = 1.0f / (1.0f + __expf(-z));
            g *= s * (1.0f + z * (1.0f - s));
        }
        float d = g * w;
        sum_d += d;
        sum_d_xhat += d * xhat;
    }
    float mean_d = block_sum(sum_d) / len;
    float mean_d_xhat = block_sum(sum_d_xhat) / len;
    for (int e = threadIdx.x; e < len; e += blockDim.x) {
        int c = first + e / inner;
        float xhat = (to_f(x[e]) - mean) * inverse_std, w = to_f(weight[c]);
        float g = to_f(dy[e]);
        if (silu) {
            float z = xhat * w + to_f(bias[c]);
            float s = 1.0f / (1.0f + __expf(-z));
            g *= s * (1.0f + z * (1.0f - s));
        }
        store(&dx[e], inverse_std * (g * w - mean_d - xhat * mean_d_xhat));
    }
}

// ---- GEGLU ---------------------------------------------------------------
// Rows of 2·width in, width out: value (first half) × GELU(gate), exact erf.

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_slope(float x) {
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * __expf(-0.5f * x * x);
}

template <typename T>
__device__ void geglu_forward(const T* x, T* y, long long n, int width) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long row = i / width, c = i % width;
        const T* r = x + row * 2 * width;
        store(&y[i], to_f(r[c]) * gelu(to_f(r[width + c])));
    }
}

template <typename T>
__device__ void geglu_backward(const T* x, const T* dy, T* dx, long long n, int width) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long row = i / width, c = i % width;
        const T* r = x + row * 2 * width;
        T* d = dx + row * 2 * width;
        float value = to_f(r[c]), gate = to_f(r[width + c]), g = to_f(dy[i]);
        store(&d[c], g * gelu(gate));
        store(&d[width + c], g * value * gelu_slope(gate));
    }
}

// ---- Attention -----------------------------------------------------------
// q [bh, nq, D], k and v [bh, nk, D], D ≤ 160. A warp takes a query row (or,
// for dK/dV, a key row); its 32 lanes take 32 keys (queries) of a tile held in
// shared memory, so the softmax needs one warp reduction per 32 scores, and
// lane l owns output dimensions l, l+32, … No N×N matrix exists anywhere.

#define TILE 32
#define MAX_PER_LANE 5
#define ROWS_PER_WARP 4
#define WARPS 8

// Rows of a [*, D] matrix into shared memory as floats, row stride D+1 (no
// bank conflicts when lane j reads row j).
template <typename T>
__device__ void load_tile(float* tile, const T* src, int first, int count, int total, int D) {
    for (int i = threadIdx.x; i < count * D; i += blockDim.x) {
        int r = i / D, d = i % D;
        tile[r * (D + 1) + d] = first + r < total ? to_f(src[(long long)(first + r) * D + d]) : 0.0f;
    }
}

// A row of global memory (read by the whole warp) · a shared-memory tile row.
template <typename T>
__device__ __forceinline__ float dot_row(const T* row, const float* tile_row, int D) {
    float s = 0.0f;
    for (int d = 0; d < D; ++d) s += to_f(row[d]) * tile_row[d];
    return s;
}

template <typename T>
__device__ void attention_forward(const T* q, const T* k, const T* v, T* out, float* lse, int nq, int nk, int D,
                                  float scale, int causal) {
    extern __shared__ float shared[];
    float* ks = shared;
    float* vs = shared + TILE * (D + 1);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    long long head = blockIdx.y;
    q += head * nq * D; k += head * (long long)nk * D; v += head * (long long)nk * D;
    out += head * nq * D; lse += head * nq;
    int row0 = blockIdx.x * (WARPS * ROWS_PER_WARP) + warp * ROWS_PER_WARP;
    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][MAX_PER_LANE];
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        m[r] = NEG_INF; l[r] = 0.0f;
        for (int j = 0; j < MAX_PER_LANE; ++j) acc[r][j] = 0.0f;
    }
    int last_key = causal ? min(nk, (int)(blockIdx.x + 1) * WARPS * ROWS_PER_WARP) : nk;
    for (int tile = 0; tile < last_key; tile += TILE) {
        __syncthreads();
        load_tile(ks, k, tile, TILE, nk, D);
        load_tile(vs, v, tile, TILE, nk, D);
        __syncthreads();
        int key = tile + lane;
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            int row = row0 + r;
            if (row >= nq) break;
            bool visible = key < nk && !(causal && key > row);
            float s = visible ? dot_row(q + (long long)row * D, ks + lane * (D + 1), D) * scale : NEG_INF;
            float m_new = fmaxf(m[r], warp_max(s));
            if (m_new == NEG_INF) continue;  // nothing visible yet
            float p = visible ? __expf(s - m_new) : 0.0f;
            float correction = __expf(m[r] - m_new);
            l[r] = l[r] * correction + warp_sum(p);
            m[r] = m_new;
            for (int j = 0; j < MAX_PER_LANE; ++j) acc[r][j] *= correction;
            for (int j = 0; j < TILE; ++j) {
                float pj = __shfl_sync(0xffffffffu, p, j);
                for (int c = 0; c < MAX_PER_LANE; ++c) {
                    int d = lane + 32 * c;
                    if (d < D) acc[r][c] += pj * vs[j * (D + 1) + d];
                }
            }
        }
    }
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        int row = row0 + r;
        if (row >= nq) break;
        // No key at all (nk = 0) leaves l = 0: the output is 0, as on the CPU.
        float inverse = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (int c = 0; c < MAX_PER_LANE; ++c) {
            int d = lane + 32 * c;
            if (d < D) store(&out[(long long)row * D + d], acc[r][c] * inverse);
        }
        if (lane == 0) lse[row] = m[r] + logf(l[r]);
    }
}

// delta[i] = Σ_d dO[i,d]·O[i,d], one warp per row.
template <typename T>
__device__ void attention_delta(const T* out, const T* grad, float* delta, long long rows, int D) {
    long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += to_f(out[row * D + d]) * to_f(grad[row * D + d]);
    s = warp_sum(s);
    if (lane == 0) delta[row] = s;
}

// dQ_i = scale · Σ_j P_ij (dO_i·v_j − delta_i) k_j, a warp per query row.
template <typename T>
__device__ void attention_dq(const T* q, const T* k, const T* v, const T* grad, const float* lse, const float* delta,
                             T* dq, int nq, int nk, int D, float scale, int causal) {
    extern __shared__ float shared[];
    float* ks = shared;
    float* vs = shared + TILE * (D + 1);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    long long head = blockIdx.y;
    q += head * nq * D; grad += head * nq * D; dq += head * nq * D;
    k += head * (long long)nk * D; v += head * (long long)nk * D;
    lse += head * nq; delta += head * nq;
    int row0 = blockIdx.x * (WARPS * ROWS_PER_WARP) + warp * ROWS_PER_WARP;
    float acc[ROWS_PER_WARP][MAX_PER_LANE];
    for (int r = 0; r < ROWS_PER_WARP; ++r)
        for (int c = 0; c < MAX_PER_LANE; ++c) acc[r][c] = 0.0f;
    int last_key = causal ? min(nk, (int)(blockIdx.x + 1) * WARPS * ROWS_PER_WARP) : nk;
    for (int tile = 0; tile < last_key; tile += TILE) {
        __syncthreads();
        load_tile(ks, k, tile, TILE, nk, D);
        load_tile(vs, v, tile, TILE, nk, D);
        __syncthreads();
        int key = tile + lane;
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            int row = row0 + r;
            if (row >= nq) break;
            bool visible = key < nk && !(causal && key > row);
            float ds = 0.0f;
            if (visible) {
                float p = __expf(dot_row(q + (long long)row * D, ks + lane * (D + 1), D) * scale - lse[row]);
                float dp = dot_row(grad + (long long)row * D, vs + lane * (D + 1), D);
                ds = p * (dp - delta[row]);
            }
            for (int j = 0; j < TILE; ++j) {
                float dsj = __shfl_sync(0xffffffffu, ds, j);
                for (int c = 0; c < MAX_PER_LANE; ++c) {
                    int d = lane + 32 * c;
                    if (d < D) acc[r][c] += dsj * ks[j * (D + 1) + d];
                }
            }
        }
    }
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        int row = row0 + r;
        if (row >= nq) break;
        for (int c = 0; c < MAX_PER_LANE; ++c) {
            int d = lane + 32 * c;
            if (d < D) store(&dq[(long long)row * D + d], acc[r][c] * scale);
        }
    }
}

// dV_j = Σ_i P_ij dO_i and dK_j = scale · Σ_i dS_ij q_i, a warp per key row,
// lanes over a tile of 32 queries.
template <typename T>
__device__ void attention_dkv(const T* q, const T* k, const T* v, const T* grad, const float* lse, const float* delta,
                              T* dk, T* dv, int nq, int nk, int D, float scale, int causal) {
    extern __shared__ float shared[];
    float* qs = shared;
    float* gs = shared + TILE * (D + 1);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    long long head = blockIdx.y;
    q += head * nq * D; grad += head * nq * D;
    k += head * (long long)nk * D; v += head * (long long)nk * D;
    dk += head * (long long)nk * D; dv += head * (long long)nk * D;
    lse += head * nq; delta += head * nq;
    int key0 = blockIdx.x * (WARPS * ROWS_PER_WARP) + warp * ROWS_PER_WARP;
    float dk_acc[ROWS_PER_WARP][MAX_PER_LANE], dv_acc[ROWS_PER_WARP][MAX_PER_LANE];
    for (int r = 0; r < ROWS_PER_WARP; ++r)
        for (int c = 0; c < MAX_PER_LANE; ++c) dk_acc[r][c] = dv_acc[r][c] = 0.0f;
    int first_query = causal ? (int)blockIdx.x * WARPS * ROWS_PER_WARP / TILE * TILE : 0;
    for (int tile = first_query; tile < nq; tile += TILE) {
        __syncthreads();
        load_tile(qs, q, tile, TILE, nq, D);
        load_tile(gs, grad, tile, TILE, nq, D);
        __syncthreads();
        int query = tile + lane;
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            int key = key0 + r;
            if (key >= nk) break;
            bool visible = query < nq && !(causal && key > query);
            float p = 0.0f, ds = 0.0f;
            if (visible) {
                p = __expf(dot_row(k + (long long)key * D, qs + lane * (D + 1), D) * scale - lse[query]);
                float dp = dot_row(v + (long long)key * D, gs + lane * (D + 1), D);
                ds = p * (dp - delta[query]);
            }
            for (int j = 0; j < TILE; ++j) {
                float pj = __shfl_sync(0xffffffffu, p, j), dsj = __shfl_sync(0xffffffffu, ds, j);
                for (int c = 0; c < MAX_PER_LANE; ++c) {
                    int d = lane + 32 * c;
                    if (d < D) {
                        dv_acc[r][c] += pj * gs[j * (D + 1) + d];
                        dk_acc[r][c] += dsj * qs[j * (D + 1) + d];
                    }
                }
            }
        }
    }
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        int key = key0 + r;
        if (key >= nk) break;
        for (int c = 0; c < MAX_PER_LANE; ++c) {
            int d = lane + 32 * c;
            if (d < D) {
                store(&dk[(long long)key * D + d], dk_acc[r][c] * scale);
                store(&dv[(long long)key * D + d], dv_acc[r][c]);
            }
        }
    }
}

#define INSTANTIATE(T, suffix)                                                                                      \
    extern "C" __global__ void norm_forward_##suffix(const T* x, const T* w, const T* b, T* y, int len, int inner,  \
                                                     int groups, float eps, int silu) {                           \
        norm_forward(x, w, b, y, len, inner, groups, eps, silu);                                                    \
    }                                                                                                               \
    extern "C" __global__ void norm_backward_##suffix(const T* x, const T* dy, const T* w, const T* b, T* dx,       \
                                                      int len, int inner, int groups, float eps, int silu) {       \
        norm_backward(x, dy, w, b, dx, len, inner, groups, eps, silu);                                              \
    }                                                                                                               \
    extern "C" __global__ void geglu_forward_##suffix(const T* x, T* y, long long n, int width) {                   \
        geglu_forward(x, y, n, width);                                                                              \
    }                                                                                                               \
    extern "C" __global__ void geglu_backward_##suffix(const T* x, const T* dy, T* dx, long long n, int width) {    \
        geglu_backward(x, dy, dx, n, width);                                                                        \
    }                                                                                                               \
    extern "C" __global__ void attention_forward_##suffix(const T* q, const T* k, const T* v, T* out, float* lse,   \
                                                          int nq, int nk, int D, float scale, int causal) {        \
        attention_forward(q, k, v, out, lse, nq, nk, D, scale, causal);                                            \
    }                                                                                                               \
    extern "C" __global__ void attention_delta_##suffix(const T* out, const T* grad, float* delta, long long rows,  \
                                                        int D) {                                                    \
        attention_delta(out, grad, delta, rows, D);                                                                 \
    }                                                                                                               \
    extern "C" __global__ void attention_dq_##suffix(const T* q, const T* k, const T* v, const T* grad,             \
                                                     const float* lse, const float* delta, T* dq, int nq, int nk,  \
                                                     int D, float scale, int causal) {                            \
        attention_dq(q, k, v, grad, lse, delta, dq, nq, nk, D, scale, causal);                                     \
    }                                                                                                               \
    extern "C" __global__ void attention_dkv_##suffix(const T* q, const T* k, const T* v, const T* grad,            \
                                                      const float* lse, const float* delta, T* dk, T* dv, int nq,  \
                                                      int nk, int D, float scale, int causal) {                    \
        attention_dkv(q, k, v, grad, lse, delta, dk, dv, nq, nk, D, scale, causal);                                \
    }

INSTANTIATE(float, f32)
INSTANTIATE(f16_t, f16)
INSTANTIATE(bf16_t, bf16)
