import AMQPClient
import Foundation
import Logging
import Testing

/// TLS against the broker's TLS listener (`scripts/broker.sh` sets it up with test certificates),
/// and against a small TLS server for the certificates a client must refuse.
@Suite("TLS", .enabled(if: Requirements.met(Requirements.tlsListener), "needs a TLS listener and its test CA: scripts/test.sh starts one"))
struct TLSTests {
    @Test("over TLS: connect, publish with confirms, consume; the same by IP address (checked against the IP SAN)",
          arguments: ["localhost", "127.0.0.1"])
    func publishAndConsume(host: String) async throws {
        var configuration = try TestBroker.tlsConfiguration
        configuration.host = host
        try await withTestConnection(AMQPConnection.connect(to: configuration)) { connection in
            #expect(connection.configuration.description.hasPrefix("amqps://"))
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            try await channel.enablePublisherConfirms()
            let total = 2_000
            var confirmations: [AMQPPublishConfirmation] = []
            // Sporadic and batched publishes both go through the TLS session.
            for index in 0..<total {
                confirmations.append(try await channel.publish("\(index)", routingKey: queue))
            }
            for confirmation in confirmations { try await confirmation.confirmed() }
            try await channel.setPrefetch(count: 200)
            var received = 0
            for try await delivery in try await channel.consume(queue: queue) {
                #expect(delivery.bodyString == "\(received)")
                received += 1
                try await delivery.ack()
                if received == total { break }
            }
            #expect(received == total)
            // A large message, over several frames and TLS records.
            let large = [UInt8](repeating: 42, count: 1 << 20)
            try await channel.publish(large, routingKey: queue).confirmed()
            let delivery = try await channel.waitForMessage(from: queue)
            #expect(delivery.body == large)
        }
    }

    @Test("mutual TLS with SASL EXTERNAL: the user is the client certificate's")
    func external() async throws {
        var configuration = try TestBroker.tlsConfiguration
        configuration.tls?.certificateFile = TestBroker.tlsFile("client.pem")
        configuration.tls?.privateKeyFile = TestBroker.tlsFile("client.key")
        configuration.authentication = .external
        configuration.username = "nobody"
        configuration.password = "not sent"
        try await withTestConnection(AMQPConnection.connect(to: configuration)) { connection in
            let channel = try await connection.openChannel()
            let info = try await channel.declareQueue("", exclusive: true)
            #expect(info.name.hasPrefix("amq.gen-"))
        }
    }

    @Test("a certificate from an unknown CA is refused, and says so")
    func unknownCA() async throws {
        var configuration = try TestBroker.tlsConfiguration
        configuration.tls?.caCertificateFile = TestBroker.tlsFile("other-ca.pem")
        let error = await expectAMQPError { _ = try await AMQPConnection.connect(to: configuration) }
        print("unknown CA: \(error.map(String.init(describing:)) ?? "no error")")
        #expect(error?.code == .tlsFailed)
        #expect(error?.message.contains("certificate") == true)
    }

    @Test("a certificate for another name is refused: by host name, and by IP address")
    func wrongName() async throws {
        var configuration = try TestBroker.tlsConfiguration
        configuration.tls?.serverName = "rabbit.example.com"
        let byName = await expectAMQPError { _ = try await AMQPConnection.connect(to: configuration) }
        print("wrong host name: \(byName.map(String.init(describing:)) ?? "no error")")
        #expect(byName?.code == .tlsFailed)
        #expect(byName?.message.lowercased().contains("hostname mismatch") == true)

        let (byAddress, received) = try await Self.refusedBy(certificate: "wrong-name", host: "127.0.0.1")
        print("wrong IP address: \(byAddress.map(String.init(describing:)) ?? "no error")")
        #expect(byAddress?.code == .tlsFailed)
        #expect(byAddress?.message.lowercased().contains("ip address mismatch") == true)
        #expect(received == 0)
    }

    @Test("an expired certificate is refused before any credential is sent")
    func expired() async throws {
        let (error, received) = try await Self.refusedBy(certificate: "expired", host: "localhost")
        print("expired certificate: \(error.map(String.init(describing:)) ?? "no error"); \(received) bytes sent after the handshake")
        #expect(error?.code == .tlsFailed)
        #expect(error?.message.contains("expired") == true)
        #expect(received == 0)
    }

    @Test("a client certificate that does not exist is a clear error")
    func missingClientCertificate() async throws {
        var configuration = try TestBroker.tlsConfiguration
        configuration.tls?.certificateFile = "/nonexistent/client.pem"
        configuration.tls?.privateKeyFile = "/nonexistent/client.key"
        let error = await expectAMQPError { _ = try await AMQPConnection.connect(to: configuration) }
        #expect(error?.code == .tlsFailed)
        #expect(error?.message.contains("/nonexistent/client.pem") == true)
    }

    // Debian's OpenSSL 3 refuses TLS 1.1 by itself. The probe runs under openssl-legacy-tls.cnf
    // (MinProtocol TLSv1 and SECLEVEL=0 in system_default), with which a client that does not set
    // its own minimum negotiates TLS 1.1 with this server: only the client's minimum refuses it.
    @Test("a server that offers only TLS 1.1 is refused, even where the system's OpenSSL allows it")
    func tls11Refused() async throws {
        let server = try FakePeer.start(
            "tls_server.py", TestBroker.tlsFile("server.pem"), TestBroker.tlsFile("server.key"), "--max-version", "1.1")
        defer { server.stop() }
        let probe = Process()
        probe.executableURL = try SampleTests.executable("AMQPProbe")
        probe.arguments = ["--url", "amqps://guest:guest@localhost:\(server.port)/?cacertfile=\(TestBroker.tlsFile("ca.pem"))"]
        probe.environment = ProcessInfo.processInfo.environment.merging(["OPENSSL_CONF": FakePeer.file("openssl-legacy-tls.cnf")]) { $1 }
        let probeOutput = Pipe()
        probe.standardOutput = probeOutput
        try probe.run()
        defer { if probe.isRunning { probe.terminate() } }
        let reported = try await withTimeout(20, "the probe to exit") {
            String(decoding: probeOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
        let seen = try await withTimeout(15, "the TLS server's report") {
            String(decoding: server.output.readDataToEndOfFile(), as: UTF8.self)
        }
        print("TLS 1.1 only: the probe says \(reported)the server says \(seen)")
        #expect(reported.contains("error code=tlsFailed"))
        #expect(seen.contains("RECEIVED 0"))
        #expect(!seen.contains("HANDSHAKE OK"))
    }

    @Test("verifiesPeer false: one warning per connection, however many frames")
    func unverifiedWarning() async throws {
        let (logger, lines) = RecordingLogHandler.logger()
        let verified = try TestBroker.tlsConfiguration
        try await withTestConnection(AMQPConnection.connect(to: verified, logger: logger)) { _ in }
        #expect(lines.all.filter { $0.level >= .warning }.isEmpty)

        var unverified = verified
        unverified.tls?.verifiesPeer = false
        try await withTestConnection(AMQPConnection.connect(to: unverified, logger: logger)) { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            try await channel.enablePublisherConfirms()
            for index in 0..<100 { try await channel.publish("\(index)", routingKey: queue).confirmed() }
        }
        let warnings = lines.all.filter { $0.level == .warning && $0.message.contains("not verified") }
        #expect(warnings.count == 1)
        #expect(warnings.first?.metadata["amqp.endpoint"] == "localhost:\(TestBroker.tlsPort)")
    }

    @Test("a private key file others can read: a warning naming the file, never its contents")
    func openPrivateKeyWarning() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amqp-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyContents = try String(contentsOfFile: TestBroker.tlsFile("client.key"), encoding: .utf8)

        for mode in [0o600, 0o640, 0o604] {
            let key = directory.appendingPathComponent("client-\(String(mode, radix: 8)).key").path
            try keyContents.write(toFile: key, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: key)
            var configuration = try TestBroker.tlsConfiguration
            configuration.tls?.certificateFile = TestBroker.tlsFile("client.pem")
            configuration.tls?.privateKeyFile = key
            configuration.authentication = .external
            let (logger, lines) = RecordingLogHandler.logger()
            try await withTestConnection(AMQPConnection.connect(to: configuration, logger: logger)) { connection in
                _ = try await connection.openChannel()
            }
            let warnings = lines.all.filter { $0.level == .warning && $0.message.contains("private key") }
            #expect(warnings.count == (mode == 0o600 ? 0 : 1), "mode \(String(mode, radix: 8))")
            if mode != 0o600 {
                #expect(warnings.first?.message.contains(key) == true)
                #expect(warnings.first?.message.contains(String(mode, radix: 8)) == true)
            }
            #expect(!lines.all.contains { "\($0.message) \($0.metadata)".contains("PRIVATE KEY") })
        }
    }

    /// Connects to `tls_server.py` presenting `certificate` (signed by the test CA); returns the
    /// client's error and how many bytes the server received after the handshake.
    static func refusedBy(certificate: String, host: String) async throws -> (AMQPError?, Int) {
        let server = try FakePeer.start(
            "tls_server.py", TestBroker.tlsFile("\(certificate).pem"), TestBroker.tlsFile("\(certificate).key"))
        defer { server.stop() }
        let port = server.port
        var configuration = try TestBroker.tlsConfiguration
        configuration.host = host
        configuration.port = port
        configuration.recovery = .disabled
        let error = await expectAMQPError { _ = try await AMQPConnection.connect(to: configuration) }
        let rest = try await withTimeout(15, "the TLS server's report") {
            String(decoding: server.output.readDataToEndOfFile(), as: UTF8.self)
        }
        let received = rest.split(separator: "\n").first { $0.hasPrefix("RECEIVED ") }.flatMap { Int($0.dropFirst(9)) } ?? -1
        return (error, received)
    }
}
