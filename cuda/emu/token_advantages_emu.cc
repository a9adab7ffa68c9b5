// cuda/token_advantages.cu (host code and kernels) compiled by g++ against the emulation.
#include "../token_advantages.cu"
