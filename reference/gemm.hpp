// Matrix products for the reference layers, on OpenBLAS.
//
// Determinism: OpenBLAS runs single-threaded; dslab splits C into row tiles
// whose size depends only on the problem shape, never on the thread count,
// and hands the tiles to OpenMP threads. Every element of C is therefore
// computed by the same single-threaded call whatever OMP_NUM_THREADS is.
#pragma once

namespace dslab {

// C[M,N] = alpha * op(A) * op(B) + beta * C, row-major.
// op(A) is [M,K] (A is [K,M] when trans_a); op(B) is [K,N] (B is [N,K] when trans_b).
// Parallel over fixed row tiles of C. Call from serial code only.
template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc);

// The same product on the calling thread only: for use inside parallel loops.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                 const T* B, int ldb, T beta, T* C, int ldc);

// Keeps OpenBLAS on one thread per call (dslab does the threading). Idempotent.
void blas_single_threaded();

}  // namespace dslab
