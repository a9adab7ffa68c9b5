// cuda/phase_entropy.cu (host code and kernel) compiled by g++ against the emulation.
#include "../phase_entropy.cu"
