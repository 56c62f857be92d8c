{% include("templates/common.cuh.lua") %}
// h[i] = silu(gate[i]) * up[i] for i < {{ N }} ({{ B }} tokens x {{ f }} neurons)
#define N_ELEMS {{ N }}
#define VEC {{ p.vec }}
#define UNROLL {{ p.unroll }}
#define THREADS {{ p.threads }}

// Stores VEC floats as T with one 4-, 8- or 16-byte store (VEC in {2, 4, 8}; sp_pack2: common.cuh.lua).
__device__ __forceinline__ void sp_store_vec(T *__restrict__ p, const float *v) {
    if (VEC == 8) {
        uint4 o;
        o.x = sp_pack2(v[0], v[1]); o.y = sp_pack2(v[2], v[3]); o.z = sp_pack2(v[4], v[5]); o.w = sp_pack2(v[6], v[7]);
        *reinterpret_cast<uint4 *>(p) = o;
    } else if (VEC == 4) {
        uint2 o;
        o.x = sp_pack2(v[0], v[1]); o.y = sp_pack2(v[2], v[3]);
        *reinterpret_cast<uint2 *>(p) = o;
    } else {
        *reinterpret_cast<unsigned *>(p) = sp_pack2(v[0], v[1]);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
sprig_swiglu(const T *__restrict__ gate, const T *__restrict__ up, T *__restrict__ h) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    // This thread's UNROLL vectors, THREADS * VEC elements apart (coalesced per step).
    const size_t first = ((size_t)blockIdx.x * THREADS * UNROLL + threadIdx.x) * VEC;
    float g[UNROLL][VEC], u[UNROLL][VEC];
#pragma unroll
    for (int k = 0; k < UNROLL; ++k) {
        const size_t i = first + (size_t)k * THREADS * VEC;
        if (i < N_ELEMS) {
            sp_load_vec_stream<VEC>(gate + i, g[k]);
            sp_load_vec_stream<VEC>(up + i, u[k]);
        }
    }
#pragma unroll
    for (int k = 0; k < UNROLL; ++k) {
        const size_t i = first + (size_t)k * THREADS * VEC;
        if (i >= N_ELEMS) return;
        float o[VEC];
#pragma unroll
        for (int v = 0; v < VEC; ++v) o[v] = sp_silu(g[k][v]) * u[k][v];
        sp_store_vec(h + i, o);
    }
}
