// The CUDA runtime API for host code: the real one (cudart, with nvcc or a host compiler), or with
// AE_CUDA_EMULATION the CPU emulation of cuda/emu/. Host-only files (the addon glue, runtime.h) include this;
// files with kernels include device.cuh, which includes this too.
#pragma once

#if defined(AE_CUDA_EMULATION)
#include "emu/cuda_emu.h"
#else
#include <cuda_runtime.h>
#endif
