import Testing

@testable import AMQPClient

@Suite("LibRabbitMQ: reusing repeated strings")
struct RepeatedStringsTests {
    @Test("an equal value gets the same string back; short, different and invalid ones are still right")
    func reuse() {
        var strings = RepeatedStrings()
        let key = "orders.placed.europe.v2"
        let first = Self.string(key, &strings)
        let second = Self.string(key, &strings)
        #expect(first == key && second == key)
        // The same storage, not a copy: nothing was allocated for the second.
        #expect(Self.storage(first) == Self.storage(second))
        #expect(Self.string("short", &strings) == "short")
        #expect(Self.string("orders.placed.europe.v3", &strings) == "orders.placed.europe.v3")
        let invalid: [UInt8] = Array("invalid-utf8-tail-".utf8) + [0xFF, 0xFE]
        let repaired = invalid.withUnsafeBytes { strings.string($0) }
        #expect(repaired == String(decoding: invalid, as: UTF8.self))
        #expect(invalid.withUnsafeBytes { strings.string($0) } == repaired)
    }

    @Test("it keeps only the most recent values")
    func bounded() {
        var strings = RepeatedStrings()
        let keys = (0..<(RepeatedStrings.capacity * 3)).map { "routing.key.number.\($0)" }
        for key in keys { #expect(Self.string(key, &strings) == key) }
        for key in keys.reversed() { #expect(Self.string(key, &strings) == key) }
    }

    static func string(_ value: String, _ strings: inout RepeatedStrings) -> String {
        Array(value.utf8).withUnsafeBytes { strings.string($0) }
    }

    static func storage(_ string: String) -> UnsafeRawPointer? {
        var copy = string
        return copy.withUTF8 { UnsafeRawPointer($0.baseAddress) }
    }
}
