// AE_HD marks the math shared by the C++ and CUDA kernels: a host + device inline function under nvcc, a plain
// inline function in C++ (and under the CPU emulation of cuda/emu/).
#pragma once

#if defined(__CUDACC__)
#define AE_HD __host__ __device__ __forceinline__
#else
#define AE_HD inline
#endif
