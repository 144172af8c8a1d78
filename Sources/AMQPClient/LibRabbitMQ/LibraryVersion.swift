import CRabbitMQ

/// The librabbitmq the client runs with, checked before its first socket is bridged:
/// ``SocketBridge`` relies on the private layout of librabbitmq's sockets (a class table of six
/// functions as the first field), which the client knows for 0.10 to 0.16. Outside that range
/// a connection is refused with a clear error rather than run on a guess.
struct LibraryVersion: Comparable, Sendable, CustomStringConvertible {
    let major: Int
    let minor: Int
    let patch: Int

    /// From `amqp_version_number()`: `major << 24 | minor << 16 | patch << 8 | release`.
    init(number: UInt32) {
        (major, minor, patch) = (Int(number >> 24), Int(number >> 16 & 0xFF), Int(number >> 8 & 0xFF))
    }

    init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        (self.major, self.minor, self.patch) = (major, minor, patch)
    }

    /// The library linked in this process.
    static let linked = LibraryVersion(number: amqp_version_number())

    /// The versions whose socket layout the bridge knows.
    static let bridged = LibraryVersion(0, 10)..<LibraryVersion(0, 17)

    var description: String { "\(major).\(minor).\(patch)" }

    static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }

    /// Throws unless `self` is one whose sockets the bridge knows.
    func checkBridgeable() throws(AMQPError) {
        guard Self.bridged.contains(self) else {
            throw AMQPError(
                code: .library,
                message: "librabbitmq \(self) is not supported: the client knows the socket layout of 0.10 to 0.16 only")
        }
    }
}
