/// Entry points for the fuzz targets in `Fuzz/` (libFuzzer feeds them arbitrary bytes): the
/// parsers that see untrusted input. Not API: `@_spi(Fuzzing)`.
@_spi(Fuzzing)
public enum FuzzingEntryPoints {
    /// Parses the bytes as an AMQP URI. Must never crash, whatever the bytes.
    public static func parseURI(_ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? AMQPConnection.Configuration(url: text)
    }

    /// Feeds the bytes to the frame scanner, as the broker's stream would arrive, in two reads;
    /// then decodes what the scanner accepts with librabbitmq's decoders, as a connection would.
    /// Must never crash, whatever the bytes.
    public static func scanAndDecodeFrames(_ bytes: UnsafeRawBufferPointer) {
        var scanner = InboundFrameScanner(limits: .init(frameMax: 131_072, maximumMessageSize: 1 << 20))
        let split = bytes.count / 2
        let first = scanner.scan(UnsafeRawBufferPointer(rebasing: bytes[..<split])) { $0 < 8 }
        let second = first ?? scanner.scan(UnsafeRawBufferPointer(rebasing: bytes[split...])) { $0 < 8 }
        guard second == nil else { return }
        _ = try? FrameDecoder.decode(Array(bytes))
    }
}
