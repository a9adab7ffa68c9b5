// cuda/runtime.cu compiled by g++ against the emulation (the .cu suffix is nvcc's; the source is the same).
#include "../runtime.cu"
