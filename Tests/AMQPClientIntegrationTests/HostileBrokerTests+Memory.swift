import Foundation
import Testing

/// What a hostile broker can make the client hold in memory, within the protocol's limits.
extension HostileBrokerTests {
    @Test("deliveries with wide headers to a consumer that takes none: its buffer limit counts the decoded headers, memory stays bounded")
    func headerFlood() async throws {
        // 1,200 deliveries of 16 bytes, each with 9,000 header values: about 210 KiB decoded each,
        // charged 580 KiB. Charged only their bodies (272 bytes each), all were buffered: about
        // 280 MiB, read in under 2 s. Charged their headers too, the consumer's 64 MiB limit
        // stops the reading after about a hundred.
        let outcome = try await Self.run("header-flood", "--hold-seconds", "4", measuringMemory: true)
        print("hostile broker header-flood: \(outcome.peakKiB / 1024) MiB peak after holding the consumer 4 s")
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        #expect(outcome.output.contains("probe: held"), "\(outcome.output)")
        #expect(outcome.peakKiB < 160 * 1024)
    }

    @Test("one message of the maximum size (128 MiB): delivered whole, in a buffer of its size, at most 1.3 times its size above the probe's baseline")
    func maximumSizeMessage() async throws {
        let baseline = try await Self.run("valid-delivery", "--exit-after", "1", measuringMemory: true)
        let outcome = try await Self.run("max-size-message", "--exit-after", "1", within: 60, measuringMemory: true)
        let size = 128 << 20
        let limitKiB = Double(baseline.peakKiB) + 1.3 * Double(size / 1024)
        print(
            "hostile broker max-size-message: \(outcome.peakKiB / 1024) MiB peak (baseline \(baseline.peakKiB / 1024) MiB, limit \(Int(limitKiB) / 1024) MiB), received at \(outcome.time(of: "probe: delivery").map(String.init(describing:)) ?? "never")"
        )
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        #expect(outcome.output.contains("probe: delivery of \(size) bytes"), "\(outcome.output)")
        #expect(Double(outcome.peakKiB) <= limitKiB)
        // Grown by doubling, the body's buffer would end at twice its size (virtual memory, but
        // what the consumer buffer is charged): reserved once a quarter has come, it fits.
        let capacity = outcome.lines.first { $0.text.hasPrefix("probe: delivery of") }
            .flatMap { Int($0.text.split(separator: " ").last ?? "") }
        print("hostile broker max-size-message: the body's buffer holds \(capacity.map(String.init) ?? "?") bytes")
        #expect(capacity.map { Double($0) <= 1.3 * Double(size) } == true)
    }
}
