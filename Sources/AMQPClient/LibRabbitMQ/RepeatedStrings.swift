#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reuses the `String`s of values that arrive again and again: the consumer tag, exchange and
/// routing key of each delivery, its content type, type and app id. Creating a `String` longer
/// than 15 UTF-8 bytes allocates, and a delivery's strings are freed by whichever task drops
/// it, so each allocation made on the I/O thread is also a free on another thread. Comparing
/// the bytes with a few recent values costs less than either.
///
/// Bounded: a handful of AMQP short strings (at most 255 bytes each). Only the I/O thread uses it.
struct RepeatedStrings {
    /// How many recent values are kept.
    static let capacity = 8
    /// Shorter strings are stored inline in the `String` itself: nothing to save.
    static let smallStringLimit = 15

    private var entries: [String] = []
    private var nextSlot = 0

    init() {
        entries.reserveCapacity(Self.capacity)
    }

    /// The string for `bytes` (UTF-8, invalid sequences repaired as `String(decoding:as:)` does),
    /// a recent equal one when there is.
    mutating func string(_ bytes: UnsafeRawBufferPointer) -> String {
        guard bytes.count > Self.smallStringLimit else { return String(decoding: bytes, as: UTF8.self) }
        for entry in entries where Self.equal(entry, bytes) { return entry }
        let string = String(decoding: bytes, as: UTF8.self)
        if entries.count < Self.capacity {
            entries.append(string)
        } else {
            entries[nextSlot] = string
            nextSlot = (nextSlot + 1) % Self.capacity
        }
        return string
    }

    private static func equal(_ string: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let utf8 = string.utf8
        guard utf8.count == bytes.count else { return false }
        // Native strings are contiguous; a repaired one that is not simply does not match.
        return utf8.withContiguousStorageIfAvailable { stored in
            memcmp(stored.baseAddress!, bytes.baseAddress!, bytes.count) == 0
        } ?? false
    }
}
