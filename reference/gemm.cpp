#include "reference/gemm.hpp"

#include <algorithm>
#include <mutex>

#include <cblas.h>

namespace dslab {

void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

namespace {

// A one-row product (decoding one token) goes to gemv, C^T = alpha op(B)^T a + beta C^T:
// OpenBLAS 0.3.21's sgemm with M = 1 becomes 5-7x slower than sgemv above about
// 1024 columns (bench/RESULTS.md, MLA decode).
void blas_call(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 1 && K > 0) {
    cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? N : K, tb ? K : N, alpha, B,
                ldb, A, ta ? lda : 1, beta, C, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void blas_call(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
               const double* B, int ldb, double beta, double* C, int ldc) {
  if (M == 1 && K > 0) {
    cblas_dgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? N : K, tb ? K : N, alpha, B,
                ldb, A, ta ? lda : 1, beta, C, 1);
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Rows of C per tile: a function of the shape alone. Aim for 8 tiles (enough
// to balance 2, 4 or 8 threads) of 64+ rows, a multiple of 8: every tile call
// packs all of op(B) again, and below about 64 rows that packing costs
// OpenBLAS a third or more of its speed.
int rows_per_tile(int M) {
  int rows = (M + 7) / 8;
  rows = (rows + 7) / 8 * 8;
  return std::max(rows, 64);
}

}  // namespace

template <class T>
void gemm_serial(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                 const T* B, int ldb, T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  blas_single_threaded();
  blas_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  blas_single_threaded();
  const int tile = rows_per_tile(M);
  const int n_tiles = (M + tile - 1) / tile;
  if (n_tiles == 1) {  // one tile: the same call, without waking a team of threads for it
    blas_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < n_tiles; ++t) {
    const int m0 = t * tile;
    const int m = std::min(tile, M - m0);
    // Row m0 of op(A): A + m0*lda, or column m0 of A when transposed.
    const T* a = trans_a ? A + m0 : A + static_cast<long>(m0) * lda;
    blas_call(trans_a, trans_b, m, N, K, alpha, a, lda, B, ldb, beta, C + static_cast<long>(m0) * ldc,
              ldc);
  }
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*,
                           int, double, double*, int);
template void gemm_serial<float>(bool, bool, int, int, int, float, const float*, int, const float*,
                                 int, float, float*, int);
template void gemm_serial<double>(bool, bool, int, int, int, double, const double*, int,
                                  const double*, int, double, double*, int);

}  // namespace dslab
