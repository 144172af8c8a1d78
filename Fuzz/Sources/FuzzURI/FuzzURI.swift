@_spi(Fuzzing) import AMQPClient
import CFuzzerDriver

/// One input: an AMQP URI from arbitrary bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzURI(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzingEntryPoints.parseURI(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}

/// The entry point SwiftPM gives this executable on Linux (see fuzzer_driver.h).
@_cdecl("FuzzURI_main")
public func fuzzURIMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, count in fuzzURI(data, count) }
}
