// The target exists for its header: libFuzzer provides LLVMFuzzerRunDriver.
