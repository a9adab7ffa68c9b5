// cuda/token_stats.cu (host code and kernels) compiled by g++ against the emulation.
#include "../token_stats.cu"
