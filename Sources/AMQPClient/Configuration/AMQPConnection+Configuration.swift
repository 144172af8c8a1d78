extension AMQPConnection {
    /// Where and how to connect. Every option has a sensible default; start from
    /// ``init(host:port:virtualHost:username:password:)`` or from an AMQP URI with
    /// ``init(url:)``.
    public struct Configuration: Sendable, Hashable, CustomStringConvertible {
        /// The broker's host name or IP address. Default: `localhost`.
        public var host: String
        /// The broker's TCP port. Default: 5672.
        public var port: Int
        /// The virtual host to open the connection on. Default: `/`.
        public var virtualHost: String
        /// The user to log in as. Default: `guest`.
        public var username: String
        /// The user's password. Default: `guest`.
        public var password: String
        /// The heartbeat interval the client asks for; the broker may lower it. `.zero` disables
        /// heartbeats. Default: 60 seconds.
        public var heartbeat: Duration
        /// The largest frame the client accepts; bodies larger than this are split. At least 4096
        /// (AMQP's minimum). Default: 131072.
        public var frameMax: UInt32
        /// The most channels the client opens at once. Default: 2047.
        public var channelMax: UInt16
        /// Bounds opening a connection as a whole: the TCP connect, the TLS handshake and the AMQP
        /// login, one deadline for all three. Default: 10 seconds.
        public var connectTimeout: Duration
        /// How long ``AMQPConnection/close()`` and ``AMQPChannel/close()`` wait for the broker to
        /// confirm before dropping the socket. `close()` of a connection returns within it in
        /// every state: while a recovery attempt is mid-handshake, while the broker does not read,
        /// while it has stopped mid-frame. Default: 5 seconds.
        public var closeTimeout: Duration
        /// How long a write may make no progress (the broker stopped reading) before the
        /// connection counts as lost, with or without heartbeats. With heartbeats, two heartbeat
        /// intervals if that is sooner. Default: 30 seconds.
        public var writeTimeout: Duration
        /// A name shown for this connection in RabbitMQ's management UI and logs.
        public var connectionName: String?
        /// How many bytes of published messages may wait for the connection's I/O thread before
        /// `publish` suspends its caller. Default: 4 MiB.
        public var publishBufferLimit: Int
        /// The largest message body the client accepts from the broker. A content header that
        /// announces more is a protocol error that closes the connection
        /// (``AMQPError/Code/protocolError``): the client never reserves memory for more than this.
        /// Default: 128 MiB, RabbitMQ's own maximum.
        public var maximumMessageSize: Int
        /// How long a call (a declaration, a binding, `consume`, `get`, opening a channel…) waits
        /// for the broker's reply. A broker that keeps the connection alive but never answers then
        /// cannot hang the caller: the call throws ``AMQPError/Code/timedOut``, and its channel
        /// closes (a late reply could no longer be told from the next one). `nil`: no limit, as
        /// long as the connection lives. Default: `nil`.
        public var callTimeout: Duration?
        /// How many publishes a channel in confirm mode may have waiting for the broker's confirm;
        /// past it, `publish` waits until confirms come back. Default: 10,000.
        public var unconfirmedPublishLimit: Int
        /// How many bytes of deliveries a consumer may hold that the application has not taken
        /// yet (each counts its body and 256 bytes). Past it the connection stops reading, so TCP
        /// makes the broker wait, until the consumer has taken half: a consumer without a prefetch
        /// (no-ack, or prefetch 0) cannot fill memory. Default: 64 MiB.
        public var consumerBufferLimit: Int
        /// How deliveries that arrive in a steady stream are handed to a consumer that waits for
        /// them: in batches, each a wake-up of the consuming task. See ``DeliveryBatching``.
        public var deliveryBatching: DeliveryBatching
        /// More nodes of the same cluster: when connecting, and on every recovery attempt, the
        /// client tries ``endpoints`` in ``endpointOrder`` until one takes the connection.
        /// Default: none.
        public var alternateEndpoints: [Endpoint]
        /// The order ``endpoints`` are tried in. Default: ``EndpointOrder/shuffled``, so that many
        /// clients spread over a cluster's nodes.
        public var endpointOrder: EndpointOrder
        /// TLS settings; `nil` for plain TCP. `amqps://` URIs set it. Default: `nil`.
        public var tls: TLS?
        /// How the client logs in: with ``username`` and ``password`` (the default), or with
        /// the TLS client certificate (`auth_mechanism=external` in a URI).
        public var authentication: Authentication
        /// What the connection does when it is lost without the application asking: by default it
        /// reconnects and restores its channels, topology and consumers. See ``Recovery``.
        public var recovery: Recovery

        /// A broker at `host` and `port`, logged in to `virtualHost` as `username`; every other
        /// option keeps its default.
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
            self.writeTimeout = .seconds(30)
            self.connectionName = nil
            self.publishBufferLimit = 4 << 20
            self.maximumMessageSize = 128 << 20
            self.consumerBufferLimit = 64 << 20
            self.deliveryBatching = DeliveryBatching()
            self.unconfirmedPublishLimit = 10_000
            self.callTimeout = nil
            self.tls = nil
            self.authentication = .plain
            self.alternateEndpoints = []
            self.endpointOrder = .shuffled
            self.recovery = Recovery()
        }

        /// The order a connection tries its ``endpoints`` in.
        public enum EndpointOrder: Sendable, Hashable {
            /// A new random order for every connection and every recovery attempt.
            case shuffled
            /// As listed: ``host`` first, then ``alternateEndpoints``.
            case inOrder
        }

        /// A cluster's nodes as URIs, one per node (`amqp://user:pass@node1:5672/vhost`, …): the first
        /// gives every setting, the others add their host and port as ``alternateEndpoints``; they
        /// must agree on the scheme, user, password and virtual host.
        public init(urls: [String]) throws(AMQPError) {
            guard let first = urls.first else {
                throw AMQPError(code: .invalidArgument, message: "a cluster needs at least one node's URI")
            }
            try self.init(url: first)
            for url in urls.dropFirst() {
                let node = try Self(url: url)
                guard node.username == username, node.password == password, node.virtualHost == virtualHost,
                    (node.tls == nil) == (tls == nil)
                else {
                    throw AMQPError(
                        code: .invalidArgument,
                        message: "every node's URI must have the same scheme, user, password and virtual host (\(node.host):\(node.port) does not)")
                }
                alternateEndpoints.append(Endpoint(host: node.host, port: node.port))
            }
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

        /// Checks what the client cannot work with, before anything is sent.
        func validate() throws(AMQPError) {
            guard frameMax >= 4096 else {
                throw .invalidArgument("frameMax is \(frameMax); AMQP requires at least 4096")
            }
            guard maximumMessageSize > 0, consumerBufferLimit > 0, publishBufferLimit > 0, unconfirmedPublishLimit > 0
            else {
                throw .invalidArgument(
                    "maximumMessageSize, consumerBufferLimit, publishBufferLimit and unconfirmedPublishLimit must be positive")
            }
            guard deliveryBatching.maximumDelay >= .zero, deliveryBatching.maximumDelay <= .seconds(1),
                deliveryBatching.maximumCount >= 1, deliveryBatching.flowingBatch >= 1
            else {
                throw .invalidArgument(
                    "deliveryBatching needs a maximumDelay from zero to one second and a maximumCount and flowingBatch of at least 1")
            }
            guard connectTimeout > .zero, closeTimeout > .zero, writeTimeout > .zero else {
                throw .invalidArgument("connectTimeout, closeTimeout and writeTimeout must be positive")
            }
            guard (1...65535).contains(port), alternateEndpoints.allSatisfy({ (1...65535).contains($0.port) }) else {
                throw .invalidArgument("a port must be from 1 to 65535")
            }
            if authentication == .external && tls?.certificateFile == nil {
                throw .invalidArgument("authentication .external needs a TLS client certificate (tls.certificateFile)")
            }
            if let tls, (tls.certificateFile == nil) != (tls.privateKeyFile == nil) {
                throw .invalidArgument("tls.certificateFile and tls.privateKeyFile go together")
            }
            // OpenSSL takes an empty name as "check no name": any certificate from a trusted CA would do.
            if let name = tls?.serverName, name.allSatisfy(\.isWhitespace) {
                throw .invalidArgument("tls.serverName is empty or blank: set the broker's host name, or nil to use the endpoint's host")
            }
        }

        /// The configuration as a URI, with the password hidden.
        public var description: String {
            let hostPart = host.contains(":") ? "[\(host)]" : host
            let vhostPart = AMQPURIParser.percentEncode(virtualHost)
            let scheme = tls == nil ? "amqp" : "amqps"
            return "\(scheme)://\(AMQPURIParser.percentEncode(username)):***@\(hostPart):\(port)/\(vhostPart)"
        }
    }
}

extension AMQPConnection.Configuration: CustomReflectable, CustomDebugStringConvertible {
    /// What `dump`, `Mirror` and debuggers show: every setting, the password hidden.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": host, "port": port, "virtualHost": virtualHost, "username": username, "password": "***",
                "heartbeat": heartbeat, "frameMax": frameMax, "channelMax": channelMax,
                "connectTimeout": connectTimeout, "closeTimeout": closeTimeout, "writeTimeout": writeTimeout,
                "connectionName": connectionName as Any, "publishBufferLimit": publishBufferLimit,
                "maximumMessageSize": maximumMessageSize, "consumerBufferLimit": consumerBufferLimit,
                "deliveryBatching": deliveryBatching,
                "unconfirmedPublishLimit": unconfirmedPublishLimit, "callTimeout": callTimeout as Any,
                "alternateEndpoints": alternateEndpoints,
                "tls": tls as Any, "authentication": authentication, "recovery": recovery,
            ],
            displayStyle: .struct)
    }

    public var debugDescription: String { description }
}
