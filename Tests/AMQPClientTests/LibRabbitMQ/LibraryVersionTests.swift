import Testing

@testable import AMQPClient

@Suite("LibRabbitMQ: the versions whose sockets the bridge knows")
struct LibraryVersionTests {
    @Test("amqp_version_number() is read as major, minor, patch")
    func decoding() {
        #expect(LibraryVersion(number: 0x000B_0001) == LibraryVersion(0, 11, 0))
        #expect(LibraryVersion(number: 0x0010_0201) == LibraryVersion(0, 16, 2))
    }

    @Test("0.10 to 0.16 are bridged; older and newer are refused with a clear error", arguments: [
        (LibraryVersion(0, 9, 9), false), (LibraryVersion(0, 10), true), (LibraryVersion(0, 11), true),
        (LibraryVersion(0, 16, 9), true), (LibraryVersion(0, 17), false), (LibraryVersion(1, 0), false),
    ])
    func range(version: LibraryVersion, bridgeable: Bool) {
        if bridgeable {
            #expect(throws: Never.self) { try version.checkBridgeable() }
        } else {
            let error = #expect(throws: AMQPError.self) { try version.checkBridgeable() }
            #expect(error?.message.contains("\(version)") == true)
        }
    }

    @Test("the library linked here is one of them")
    func linked() {
        #expect(LibraryVersion.bridged.contains(LibraryVersion.linked), "linked: \(LibraryVersion.linked)")
    }
}
