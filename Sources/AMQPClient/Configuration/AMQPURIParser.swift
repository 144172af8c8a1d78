/// RabbitMQ's AMQP URI specification: https://www.rabbitmq.com/docs/uri-spec
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
        case "amqp":
            configuration.tls = nil
        case "amqps":
            configuration.tls = configuration.tls ?? .init()
            configuration.port = 5671
        default:
            throw fail("the scheme must be amqp or amqps")
        }
        var rest = url[url.index(colon, offsetBy: 3)...]
        // `amqp://user:pa/ss@host` would put part of the password into the host or the virtual
        // host, and from there into error messages: refuse it rather than guess.
        if let delimiter = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }),
            rest[delimiter...].contains("@")
        {
            throw fail(
                "an @ after the host is ambiguous: percent-encode a /, ? or # in the user name or password (%2F, %3F, %23) and an @ in the virtual host (%40)")
        }

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
                guard let frameMax = UInt32(value), frameMax >= 4096 else {
                    throw fail("frame_max must be at least 4096")
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
            case "cacertfile", "certfile", "keyfile", "verify", "server_name_indication":
                guard configuration.tls != nil else { throw fail("\(key) needs an amqps:// URI") }
                switch key {
                case "cacertfile": configuration.tls?.caCertificateFile = value
                case "certfile": configuration.tls?.certificateFile = value
                case "keyfile": configuration.tls?.privateKeyFile = value
                case "verify":
                    switch value {
                    case "verify_peer": configuration.tls?.verifiesPeer = true
                    case "verify_none": configuration.tls?.verifiesPeer = false
                    default: throw fail("verify must be verify_peer or verify_none")
                    }
                default:
                    // An empty name would turn OpenSSL's host name check off.
                    guard !value.allSatisfy(\.isWhitespace) else {
                        throw fail("server_name_indication needs a host name (or disable)")
                    }
                    if value == "disable" {
                        configuration.tls?.sendsServerName = false
                    } else {
                        configuration.tls?.serverName = value
                    }
                }
            case "auth_mechanism":
                switch value.lowercased() {
                case "external": configuration.authentication = .external
                case "plain", "amqplain": configuration.authentication = .plain
                default: throw fail("auth_mechanism must be external or plain")
                }
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
