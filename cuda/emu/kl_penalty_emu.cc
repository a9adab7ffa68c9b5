// cuda/kl_penalty.cu (host code and kernel) compiled by g++ against the emulation.
#include "../kl_penalty.cu"
