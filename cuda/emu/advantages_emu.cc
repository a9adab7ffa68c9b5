// cuda/advantages.cu (host code and kernels) compiled by g++ against the emulation.
#include "../advantages.cu"
