// Prints the kernels compiled into the stand-in, "family name" a line, sorted.
#include <cstdio>
extern "C" const char* drEmuKernelList();
int main() {
    fputs(drEmuKernelList(), stdout);
    return 0;
}
