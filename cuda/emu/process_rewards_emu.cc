// cuda/process_rewards.cu (host code and kernels) compiled by g++ against the emulation.
#include "../process_rewards.cu"
