// cuda/policy_loss.cu (host code and kernels) compiled by g++ against the emulation.
#include "../policy_loss.cu"
