import Synchronization

/// Random (version 4) UUID strings for message ids, from xoshiro256** seeded by the system's
/// generator. Foundation's `UUID()` reads `/dev/urandom` on Linux (an open, a read and a close:
/// about 3 µs, more than the rest of a publish); this takes a few tens of nanoseconds. Ids need to
/// be unique, not secret: 122 random bits from a generator seeded with 256 bits of the system's.
final class MessageIDGenerator: Sendable {
    private let state: Mutex<(UInt64, UInt64, UInt64, UInt64)>

    init() {
        var system = SystemRandomNumberGenerator()
        var seed = (system.next(), system.next(), system.next(), system.next())
        if seed == (0, 0, 0, 0) { seed.0 = 1 }  // xoshiro's one forbidden state
        state = Mutex(seed)
    }

    /// `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, lowercase hex.
    func next() -> String {
        var (high, low) = state.withLock { state in (Self.step(&state), Self.step(&state)) }
        high = (high & ~0xF000) | 0x4000  // version 4 (bits 48-51 of the first half, big-endian)
        low = (low & ~(0xC000 << 48)) | (0x8000 << 48)  // variant 10
        return Self.format(high, low)
    }

    private static func step(_ s: inout (UInt64, UInt64, UInt64, UInt64)) -> UInt64 {
        let result = rotateLeft(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotateLeft(s.3, 45)
        return result
    }

    private static func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }

    private static let hex = Array("0123456789abcdef".utf8)

    static func format(_ high: UInt64, _ low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 36) { buffer in
            var index = 0
            func put(_ value: UInt64, nibbles: Int, shift: Int) {
                for nibble in stride(from: nibbles - 1, through: 0, by: -1) {
                    buffer[index] = hex[Int((value >> UInt64(shift + nibble * 4)) & 0xF)]
                    index += 1
                }
            }
            put(high, nibbles: 8, shift: 32)
            buffer[index] = UInt8(ascii: "-"); index += 1
            put(high, nibbles: 4, shift: 16)
            buffer[index] = UInt8(ascii: "-"); index += 1
            put(high, nibbles: 4, shift: 0)
            buffer[index] = UInt8(ascii: "-"); index += 1
            put(low, nibbles: 4, shift: 48)
            buffer[index] = UInt8(ascii: "-"); index += 1
            put(low, nibbles: 12, shift: 0)
            return index
        }
    }
}
