import Foundation
import Testing

/// What a hostile broker can make the client hold in memory, within the protocol's limits.
extension HostileBrokerTests {
    @Test("deliveries with wide headers to a consumer that takes none: its buffer limit counts the decoded headers, memory stays bounded")
    func headerFlood() async throws {
        // 300 deliveries of 16 bytes, each with 9,000 header values: about 870 KiB decoded each.
        // Charged only their bodies (256 bytes each), all 300 were buffered: 284 MiB. Charged
        // their headers too, the 64 MiB buffer limit stops the reading after about a hundred.
        let outcome = try await Self.run("header-flood", "--hold-seconds", "4")
        print("hostile broker header-flood: \(outcome.peakKiB / 1024) MiB peak after holding the consumer 4 s")
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        #expect(outcome.output.contains("probe: held"), "\(outcome.output)")
        #expect(outcome.peakKiB < 160 * 1024)
    }

    @Test("one message of the maximum size (128 MiB): delivered whole, at most 1.3 times its size above the probe's baseline")
    func maximumSizeMessage() async throws {
        let baseline = try await Self.run("valid-delivery", "--exit-after", "1")
        let outcome = try await Self.run("max-size-message", "--exit-after", "1", within: 60)
        let size = 128 << 20
        let limitKiB = Double(baseline.peakKiB) + 1.3 * Double(size / 1024)
        print(
            "hostile broker max-size-message: \(outcome.peakKiB / 1024) MiB peak (baseline \(baseline.peakKiB / 1024) MiB, limit \(Int(limitKiB) / 1024) MiB), received at \(outcome.time(of: "probe: delivery").map(String.init(describing:)) ?? "never")"
        )
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        #expect(outcome.output.contains("probe: delivery of \(size) bytes"), "\(outcome.output)")
        #expect(Double(outcome.peakKiB) <= limitKiB)
    }
}
