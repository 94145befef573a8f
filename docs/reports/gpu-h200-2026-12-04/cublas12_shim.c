/* libcublas.so.12 forwarding shim for a device image that has only CUDA 13's cuBLAS.
   faiss-gpu-cu12 imports these eight symbols at version libcublas.so.12; each one jumps to
   the same-named function of libcublas.so.13 (signatures unchanged between 12 and 13). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#define FNS X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasGemmEx) X(cublasGemmStridedBatchedEx) \
  X(cublasGetMathMode) X(cublasSetMathMode) X(cublasSetStream_v2) X(cublasSgemmEx)
#define X(f) void *p_##f __attribute__((visibility("hidden")));
FNS
#undef X
__attribute__((constructor)) static void shim_init(void) {
  const char *path = getenv("CUBLAS13");
  void *h = dlopen(path ? path : "libcublas.so.13", RTLD_NOW | RTLD_GLOBAL);
  if (!h) { fprintf(stderr, "cublas shim: %s\n", dlerror()); abort(); }
#define X(f) if (!(p_##f = dlsym(h, #f))) { fprintf(stderr, "cublas shim: no %s\n", #f); abort(); }
  FNS
#undef X
}
#define X(f) __asm__(".globl " #f "\n.type " #f ",@function\n" #f ":\n jmp *p_" #f "(%rip)\n.size " #f ",.-" #f "\n");
FNS
#undef X
