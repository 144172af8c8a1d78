@_spi(Fuzzing) import AMQPClient
import CFuzzerDriver

/// One input: a content header's property flags and properties, through the frame scanner,
/// librabbitmq's properties decoder and the conversion of its values to Swift.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProperties(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzingEntryPoints.scanAndDecodeProperties(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}

/// The entry point SwiftPM gives this executable on Linux (see fuzzer_driver.h).
@_cdecl("FuzzProperties_main")
public func fuzzPropertiesMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, count in fuzzProperties(data, count) }
}
