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

    /// Takes the bytes as a content header's property flags and properties (class `basic`):
    /// checks them as the frame scanner does and, when it accepts them, decodes them with
    /// librabbitmq and converts the values (headers tables included) to Swift, as a connection
    /// would. Must never crash, whatever the bytes: a property-flag word with the continuation
    /// bit, tables nested or wide beyond the limits, lengths past the end.
    public static func scanAndDecodeProperties(_ bytes: UnsafeRawBufferPointer) {
        let payload: [UInt8] = [0, 60, 0, 0] + [UInt8](repeating: 0, count: 8) + Array(bytes)
        let size = UInt32(payload.count)
        let frame: [UInt8] =
            [InboundFrameScanner.headerFrame, 0, 1, UInt8(size >> 24), UInt8(size >> 16 & 0xFF), UInt8(size >> 8 & 0xFF), UInt8(size & 0xFF)]
            + payload + [InboundFrameScanner.frameEndOctet]
        var scanner = InboundFrameScanner(limits: .init(frameMax: 1 << 20, maximumMessageSize: 1 << 20))
        let violation = frame.withUnsafeBytes { scanner.scan($0) { $0 == 1 } }
        guard violation == nil else { return }
        do {
            _ = try FrameDecoder.decode(frame)
        } catch let refused as ProtocolViolation {
            // The conversion's limits are a second wall: what the frame check let through must
            // pass them too, or the two disagree about the bytes.
            preconditionFailure("the frame check accepted properties the conversion refuses: \(refused)")
        } catch {}
    }
}
