// cuda/rollout_correction.cu (host code and kernel) compiled by g++ against the emulation.
#include "../rollout_correction.cu"
