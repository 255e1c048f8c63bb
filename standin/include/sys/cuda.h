// What `#include <cuda.h>` gives a kernel under the stand-in: nothing here.
// Device code needs only CUtensorMap from it, which emu/ptx_hopper.h
// defines (translate.py drops this header's text with every other one
// outside the kernel sources).
#pragma once
