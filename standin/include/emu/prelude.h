// Stage 1 of the stand-in's build (g++ -E): what nvcc makes visible to every
// .cu before its first line, as macros, so the preprocessor expands them in
// the kernels (INFINITY, UINT32_MAX, ...). The declarations these headers
// bring are dropped by translate.py; emu/device.h includes them again.
// __global__, __shared__ and __launch_bounds__ stay undefined here: they
// survive preprocessing as tokens for translate.py to rewrite.
#pragma once
#define __CUDACC__ 1
#define __NVCC__ 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
// nvcc's mark of an sm_90a pass: the stand-in emulates wgmma, TMA and
// setmaxnreg, so the sm_90a-only bodies (kernels/conv_sm90.cu) are compiled.
#define __CUDA_ARCH_FEAT_SM90_ALL 1
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
