extension AMQPConnection {
    /// Where and how to connect. Every option has a sensible default; start from
    /// ``init(host:port:virtualHost:username:password:)`` or from an AMQP URI with
    /// ``init(url:)``.
    public struct Configuration: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var virtualHost: String
        public var username: String
        public var password: String
        /// The heartbeat interval the client asks for; the broker may lower it. `.zero` disables
        /// heartbeats. Default: 60 seconds.
        public var heartbeat: Duration
        /// The largest frame the client accepts; bodies larger than this are split. Default: 131072.
        public var frameMax: UInt32
        /// The most channels the client opens at once. Default: 2047.
        public var channelMax: UInt16
        /// Bounds the TCP connect and, separately, the AMQP handshake. Default: 10 seconds.
        public var connectTimeout: Duration
        /// How long ``AMQPConnection/close()`` and ``AMQPChannel/close()`` wait for the broker to
        /// confirm before dropping the socket. Default: 5 seconds.
        public var closeTimeout: Duration
        /// A name shown for this connection in RabbitMQ's management UI and logs.
        public var connectionName: String?
        /// How many bytes of published messages may wait for the connection's I/O thread before
        /// `publish` suspends its caller. Default: 4 MiB.
        public var publishBufferLimit: Int
        /// More brokers of the same cluster to try, in order, after ``host`` and ``port``: when
        /// connecting, and on every recovery attempt. Default: none.
        public var alternateEndpoints: [Endpoint]
        /// What the connection does when it is lost without the application asking: by default it
        /// reconnects and restores its channels, topology and consumers. See ``Recovery``.
        public var recovery: Recovery

        public init(
            host: String = "localhost",
            port: Int = 5672,
            virtualHost: String = "/",
            username: String = "guest",
            password: String = "guest"
        ) {
            self.host = host
            self.port = port
            self.virtualHost = virtualHost
            self.username = username
            self.password = password
            self.heartbeat = .seconds(60)
            self.frameMax = 131_072
            self.channelMax = 2047
            self.connectTimeout = .seconds(10)
            self.closeTimeout = .seconds(5)
            self.connectionName = nil
            self.publishBufferLimit = 4 << 20
            self.alternateEndpoints = []
            self.recovery = Recovery()
        }

        /// Every broker address to try, in order: ``host`` and ``port``, then ``alternateEndpoints``.
        public var endpoints: [Endpoint] {
            [Endpoint(host: host, port: port)] + alternateEndpoints
        }

        /// Parses an AMQP URI as RabbitMQ specifies it:
        /// `amqp://user:password@host:port/vhost?heartbeat=10&connection_timeout=5000`.
        ///
        /// User, password and vhost are percent-decoded (`%2f` is the vhost `/`); a missing or
        /// empty path means the vhost `/`. Query parameters: `heartbeat` (seconds), `frame_max`,
        /// `channel_max`, `connection_timeout` (milliseconds) and `connection_name`; others are ignored.
        public init(url: String) throws(AMQPError) {
            self.init()
            try AMQPURIParser.parse(url, into: &self)
        }

        /// The configuration as a URI, with the password hidden.
        public var description: String {
            let hostPart = host.contains(":") ? "[\(host)]" : host
            let vhostPart = AMQPURIParser.percentEncode(virtualHost)
            return "amqp://\(AMQPURIParser.percentEncode(username)):***@\(hostPart):\(port)/\(vhostPart)"
        }
    }
}

enum AMQPURIParser {
    static func parse(_ url: String, into configuration: inout AMQPConnection.Configuration) throws(AMQPError) {
        func fail(_ reason: String) -> AMQPError {
            // The URI may hold a password: describe the problem, never echo the input.
            .invalidArgument("malformed AMQP URI: \(reason)")
        }

        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else {
            throw fail("expected amqp://")
        }
        switch url[..<colon].lowercased() {
        case "amqp": break
        case "amqps": throw fail("amqps (TLS) is not supported yet")
        default: throw fail("the scheme must be amqp")
        }
        var rest = url[url.index(colon, offsetBy: 3)...]

        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        if let hash = query.firstIndex(of: "#") { query = query[..<hash] }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }

        var authority = rest
        var path: Substring? = nil
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        }

        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                configuration.username = try decode(userInfo[..<colon], "user name")
                configuration.password = try decode(userInfo[userInfo.index(after: colon)...], "password")
            } else {
                configuration.username = try decode(userInfo, "user name")
            }
        }

        var hostPart = authority
        var portPart: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail("unterminated IPv6 address") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let afterBracket = authority[authority.index(after: close)...]
            if afterBracket.hasPrefix(":") {
                portPart = afterBracket.dropFirst()
            } else if !afterBracket.isEmpty {
                throw fail("unexpected text after the IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        }
        if !hostPart.isEmpty {
            configuration.host = try decode(hostPart, "host")
        }
        if let portPart, !portPart.isEmpty {
            guard let port = Int(portPart), (1...65535).contains(port) else {
                throw fail("the port must be a number from 1 to 65535")
            }
            configuration.port = port
        }

        if let path, !path.isEmpty {
            guard !path.contains("/") else { throw fail("a / inside the virtual host must be written %2f") }
            configuration.virtualHost = try decode(path, "virtual host")
        } else {
            configuration.virtualHost = "/"
        }

        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try decode(parts[0], "query key")
            let value = parts.count > 1 ? try decode(parts[1], "query value") : ""
            switch key {
            case "heartbeat":
                guard let seconds = UInt16(value) else { throw fail("heartbeat must be a whole number of seconds") }
                configuration.heartbeat = .seconds(Int(seconds))
            case "frame_max":
                guard let frameMax = UInt32(value), frameMax >= 4096 || frameMax == 0 else {
                    throw fail("frame_max must be 0 or at least 4096")
                }
                configuration.frameMax = frameMax
            case "channel_max":
                guard let channelMax = UInt16(value) else { throw fail("channel_max must be from 0 to 65535") }
                configuration.channelMax = channelMax
            case "connection_timeout":
                guard let milliseconds = UInt32(value), milliseconds > 0 else {
                    throw fail("connection_timeout must be a positive number of milliseconds")
                }
                configuration.connectTimeout = .milliseconds(Int(milliseconds))
            case "connection_name":
                configuration.connectionName = value
            default:
                continue  // RabbitMQ's URI spec lets clients ignore parameters they do not know.
            }
        }
    }

    static func decode(_ text: Substring, _ what: String) throws(AMQPError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw .invalidArgument("malformed AMQP URI: bad percent-encoding in the \(what)")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw .invalidArgument("malformed AMQP URI: the \(what) is not valid UTF-8")
        }
        return decoded
    }

    static func percentEncode(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]], as: UTF8.self)
            }
        }
        return result
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
