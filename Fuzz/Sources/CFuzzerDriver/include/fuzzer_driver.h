#ifndef FUZZER_DRIVER_H
#define FUZZER_DRIVER_H

#include <stddef.h>
#include <stdint.h>

// libFuzzer's driver, for an executable that has its own main: SwiftPM on Linux names an
// executable's entry point <Target>_main and points `main` at it, so libFuzzer's own main is
// not linked in.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
