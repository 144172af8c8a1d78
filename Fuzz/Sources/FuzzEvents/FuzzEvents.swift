@_spi(Fuzzing) import AMQPEvents
import CFuzzerDriver

/// One input: a received message's envelope and body, through the event layer's reader, the
/// payload's decoding and schema validation.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEvents(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    EventFuzzingEntryPoints.readEnvelope(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}

/// The entry point SwiftPM gives this executable on Linux (see fuzzer_driver.h).
@_cdecl("FuzzEvents_main")
public func fuzzEventsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, count in fuzzEvents(data, count) }
}
