import Testing

@testable import AMQPClient

@Suite("AMQP URI parsing")
struct ConfigurationTests {
    typealias Configuration = AMQPConnection.Configuration

    @Test("a bare amqp:// uses every default")
    func defaults() throws {
        let configuration = try Configuration(url: "amqp://")
        #expect(configuration.host == "localhost")
        #expect(configuration.port == 5672)
        #expect(configuration.virtualHost == "/")
        #expect(configuration.username == "guest")
        #expect(configuration.password == "guest")
        #expect(configuration.heartbeat == .seconds(60))
        #expect(configuration.connectTimeout == .seconds(10))
    }

    @Test("user, password, host, port and vhost are read and percent-decoded")
    func fullURI() throws {
        let configuration = try Configuration(url: "amqp://us%40er:p%3Ass%2Fw@broker.example:5673/my%2fvhost")
        #expect(configuration.username == "us@er")
        #expect(configuration.password == "p:ss/w")
        #expect(configuration.host == "broker.example")
        #expect(configuration.port == 5673)
        #expect(configuration.virtualHost == "my/vhost")
    }

    @Test("%2f is the vhost /, and an empty path means / too", arguments: [
        ("amqp://host/%2f", "/"), ("amqp://host/%2F", "/"), ("amqp://host/", "/"), ("amqp://host", "/"),
        ("amqp://host/production", "production"),
    ])
    func virtualHosts(url: String, expected: String) throws {
        #expect(try Configuration(url: url).virtualHost == expected)
    }

    @Test("IPv6 hosts in brackets")
    func ipv6() throws {
        let configuration = try Configuration(url: "amqp://[::1]:5999")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 5999)
        #expect(try Configuration(url: "amqp://[fe80::1]").port == 5672)
    }

    @Test("query parameters")
    func query() throws {
        let configuration = try Configuration(
            url: "amqp://h/?heartbeat=5&frame_max=8192&channel_max=16&connection_timeout=2500&connection_name=svc%20a&unknown=1")
        #expect(configuration.heartbeat == .seconds(5))
        #expect(configuration.frameMax == 8192)
        #expect(configuration.channelMax == 16)
        #expect(configuration.connectTimeout == .milliseconds(2500))
        #expect(configuration.connectionName == "svc a")
        #expect(try Configuration(url: "amqp://h?heartbeat=0").heartbeat == .zero)
    }

    @Test("malformed URIs are an invalidArgument error", arguments: [
        "localhost:5672", "http://host", "amqp:/host", "amqp://host:notaport", "amqp://host:70000",
        "amqp://host/a/b", "amqp://us%zzer@host", "amqp://host?heartbeat=soon", "amqp://host?frame_max=10",
        "amqp://[::1", "amqp://host?frame_max=0", "amqp://host?cacertfile=/ca.pem", "amqps://host?verify=maybe",
        "amqps://host?auth_mechanism=kerberos",
        // Ambiguous user info: an unencoded / ? or # in the password would leak it into the vhost.
        "amqp://alice:pa/ss@host", "amqp://alice:pa?ss@host/vh", "amqp://alice:pa#ss@host",
    ])
    func malformed(url: String) {
        #expect {
            try Configuration(url: url)
        } throws: { error in
            (error as? AMQPError)?.code == .invalidArgument
        }
    }

    @Test("neither errors nor descriptions contain the password")
    func passwordsStayHidden() throws {
        let configuration = try Configuration(url: "amqp://alice:hunter2secret@host/vh")
        #expect(!configuration.description.contains("hunter2secret"))
        #expect(configuration.description == "amqp://alice:***@host:5672/vh")
        do {
            _ = try Configuration(url: "amqp://alice:hunter2secret@host:bad/")
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("hunter2secret"))
        }
    }

    @Test("dump, Mirror and debugDescription never show the password; a URI's broken password is never echoed")
    func passwordsStayOutOfReflection() throws {
        var configuration = try Configuration(url: "amqp://alice:hunter2secret@host/vh")
        configuration.connectionName = "orders"
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(!dumped.contains("hunter2secret"))
        #expect(dumped.contains("alice"))
        #expect(!String(reflecting: configuration).contains("hunter2secret"))
        #expect(!Mirror(reflecting: configuration).children.contains { "\($0.value)".contains("hunter2secret") })
        do {
            _ = try Configuration(url: "amqp://alice:hunter2/secret@host")
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("secret"))
        }
    }

    @Test("a configuration the client cannot work with is refused before connecting")
    func validation() {
        var configuration = Configuration()
        configuration.frameMax = 0
        #expect(throws: AMQPError.self) { try configuration.validate() }
        configuration.frameMax = 4096
        configuration.maximumMessageSize = 0
        #expect(throws: AMQPError.self) { try configuration.validate() }
    }

    @Test("amqps URIs: port 5671, RabbitMQ's TLS parameters, SASL EXTERNAL")
    func amqps() throws {
        let plain = try Configuration(url: "amqps://rabbit.example.com/")
        #expect(plain.port == 5671)
        #expect(plain.tls == Configuration.TLS())
        #expect(plain.description.hasPrefix("amqps://"))
        let full = try Configuration(
            url: "amqps://127.0.0.1:5999/?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/c.key&verify=verify_none&server_name_indication=rabbit.local&auth_mechanism=external")
        #expect(full.port == 5999)
        #expect(full.tls?.caCertificateFile == "/ca.pem")
        #expect(full.tls?.certificateFile == "/c.pem")
        #expect(full.tls?.privateKeyFile == "/c.key")
        #expect(full.tls?.verifiesPeer == false)
        #expect(full.tls?.serverName == "rabbit.local")
        #expect(full.authentication == .external)
        #expect(try Configuration(url: "amqps://h/?server_name_indication=disable").tls?.sendsServerName == false)
        #expect(try Configuration(url: "amqp://h/").tls == nil)
    }

    // OpenSSL's host check with an empty name accepts a certificate for any host.
    @Test("an empty server_name_indication in an amqps URI is refused, naming the option",
          arguments: ["amqps://h/?server_name_indication=", "amqps://h/?server_name_indication", "amqps://h/?server_name_indication=%20"])
    func emptyServerNameInURI(url: String) {
        #expect {
            try Configuration(url: url)
        } throws: { error in
            let error = error as? AMQPError
            return error?.code == .invalidArgument && error?.message.contains("server_name_indication") == true
        }
    }

    @Test("validate() refuses an empty or blank tls.serverName", arguments: ["", " ", "\t\n"])
    func emptyServerNameInConfiguration(name: String) throws {
        var configuration = try Configuration(url: "amqps://rabbit.example.com/")
        configuration.tls?.serverName = name
        #expect {
            try configuration.validate()
        } throws: { error in
            let error = error as? AMQPError
            return error?.code == .invalidArgument && error?.message.contains("tls.serverName") == true
        }
        configuration.tls?.serverName = "rabbit.example.com"
        try configuration.validate()
    }
}
