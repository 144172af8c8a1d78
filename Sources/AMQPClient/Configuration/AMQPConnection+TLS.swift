extension AMQPConnection.Configuration {
    /// TLS for `amqps://`: the broker's certificate is verified against trusted CAs and the
    /// host name (or IP address) by default, before any credential is sent, over TLS 1.2 or newer.
    ///
    /// ```swift
    /// var configuration = try AMQPConnection.Configuration(url: "amqps://user:secret@rabbit.example.com/")
    /// // Mutual TLS, with the user taken from the client certificate (SASL EXTERNAL):
    /// configuration.tls?.certificateFile = "/etc/app/client.pem"
    /// configuration.tls?.privateKeyFile = "/etc/app/client.key"
    /// configuration.authentication = .external
    /// ```
    public struct TLS: Sendable, Hashable {
        /// A PEM file of the certificate authorities to trust. `nil`: the system's trust store.
        public var caCertificateFile: String?
        /// A PEM file with the client's certificate (and its chain), for mutual TLS.
        public var certificateFile: String?
        /// A PEM file with the client certificate's private key (unencrypted).
        public var privateKeyFile: String?
        /// Verify the broker's certificate chain and its name. Turning it off makes the
        /// connection open to anyone on the path: only for local experiments. Default: `true`.
        public var verifiesPeer: Bool
        /// The name to verify the broker's certificate against and to send as SNI; `nil`: the
        /// host of the endpoint being connected to. An IP address is verified against the
        /// certificate's IP addresses and sent without SNI.
        public var serverName: String?
        /// Whether to send the server name (SNI), which brokers behind a shared TLS front need.
        /// Default: `true`.
        public var sendsServerName: Bool

        /// TLS settings; every one left out keeps its default.
        public init(
            caCertificateFile: String? = nil,
            certificateFile: String? = nil,
            privateKeyFile: String? = nil,
            verifiesPeer: Bool = true,
            serverName: String? = nil,
            sendsServerName: Bool = true
        ) {
            self.caCertificateFile = caCertificateFile
            self.certificateFile = certificateFile
            self.privateKeyFile = privateKeyFile
            self.verifiesPeer = verifiesPeer
            self.serverName = serverName
            self.sendsServerName = sendsServerName
        }
    }

    /// How the client proves who it is.
    public enum Authentication: Sendable, Hashable {
        /// ``AMQPConnection/Configuration/username`` and ``AMQPConnection/Configuration/password``.
        case plain
        /// The client certificate of a TLS connection (RabbitMQ's `rabbitmq_auth_mechanism_ssl`
        /// plugin); the user is the certificate's, and the password is not sent.
        case external
    }
}
