@_spi(Fuzzing) import AMQPClient
import CFuzzerDriver

/// One input: a stream of frames from a broker, through the frame scanner and librabbitmq's
/// decoders (properties and field tables included).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzingEntryPoints.scanAndDecodeFrames(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}

/// The entry point SwiftPM gives this executable on Linux (see fuzzer_driver.h).
@_cdecl("FuzzFrames_main")
public func fuzzFramesMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, count in fuzzFrames(data, count) }
}
