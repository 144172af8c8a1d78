/// A RabbitMQ version (`3.10.8`), to tell what the broker supports.
struct AMQPVersion: Comparable, Sendable {
    var major: Int
    var minor: Int
    var patch: Int

    init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        (self.major, self.minor, self.patch) = (major, minor, patch)
    }

    /// The `version` of a broker's server properties; `nil` when it has none that parses.
    init?(_ serverProperties: AMQPFieldTable) {
        guard case .string(let text) = serverProperties["version"] else { return nil }
        let parts = text.split(separator: ".").map { Int($0.prefix { $0.isNumber }) }
        guard parts.count >= 2, let major = parts[0], let minor = parts[1] else { return nil }
        self.init(major, minor, parts.count > 2 ? parts[2] ?? 0 : 0)
    }

    static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }
}
