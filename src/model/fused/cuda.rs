//! CUDA kernels of the fused ops (to be written).
